//! storefold-core: the pure domain of storefold.
//!
//! Canonical events ([`event`]), money ([`money`]), identities ([`identity`]), the
//! aggregates and the fold ([`aggregate`], [`engine`]). No I/O, no clock, no
//! randomness: the same events give the same state, whatever order they come in.

pub mod aggregate;
pub mod engine;
pub mod event;
pub mod identity;
pub mod ledger;
pub mod limits;
pub mod money;
pub mod rates;
pub mod state;

pub use engine::{BatchOutput, Engine, FoldError, MemStore, Outcome, Projection, Source};
pub use event::{Envelope, Event, OrderId};
pub use identity::{CustomerId, Identity, IdentityKey, IdentityKind};
pub use money::{Currency, Money, MoneyBag, MoneyError};
