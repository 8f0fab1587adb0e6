//! storefold-core: the pure domain of storefold.
//!
//! Canonical events ([`event`]), money ([`money`]), identities ([`identity`]), the
//! aggregates and the fold ([`aggregate`], [`engine`]). No I/O, no clock, no
//! randomness: the same events give the same state, whatever order they come in.

pub mod event;
pub mod identity;
pub mod money;

pub use event::{Envelope, Event, OrderId};
pub use identity::{CustomerId, Identity, IdentityKey, IdentityKind};
pub use money::{Currency, Money, MoneyBag, MoneyError};
