//! Types and helpers every provider shares, one file per concern:
//!
//! - [`request`]: the request, credentials and stored event a provider works on
//!   and what it returns ([`Headers`], [`WebhookRequest`], [`Inbound`],
//!   [`RawInput`], [`Signed`]);
//! - [`options`]: the tenant's mapping options ([`MapOptions`], [`MapContext`]);
//! - [`order_refs`]: the order a payment event belongs to;
//! - [`signature`]: HMAC, constant-time comparison and the shared `verify`/`sign`
//!   building blocks;
//! - [`json`]: parsing payloads with value-free errors;
//! - [`money`](mod@money) and [`timestamps`]: amounts and times of a payload,
//!   naming the field on error;
//! - [`text`]: small string helpers of the mappings.
//!
//! Everything is re-exported here and at the crate root, so a provider imports
//! `crate::{Headers, parse_json, ...}` without knowing which file holds what.

mod json;
mod money;
mod options;
mod order_refs;
mod request;
mod signature;
mod text;
mod timestamps;

pub use json::*;
pub use money::*;
pub use options::*;
pub(crate) use order_refs::*;
pub use request::*;
pub use signature::*;
pub use text::*;
pub use timestamps::*;
