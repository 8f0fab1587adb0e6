//! storefold-codec: the Avro contracts of storefold's topics.
//!
//! - [`schemas/`](RecordKind::file_name) holds one `.avsc` per record, namespace
//!   `io.storefold`; they are compiled in ([`AvroCodec::embedded`]) and can be
//!   loaded from a directory ([`AvroCodec::from_dir`]).
//! - [`AvroCodec`] encodes and decodes the records ([`RawEvent`],
//!   [`CustomerProjection`], [`OrderProjection`], [`PayoutProjection`], [`Trigger`], [`StateRecord`],
//!   [`CommitMarker`]) as Avro single-object encoding or in Confluent's wire format
//!   ([`WireFormat`]).
//! - [`check_backward`] and [`check_dir`] check that a schema change keeps every
//!   record readable: a reader with the new schema must read data written with the
//!   old one.
//! - [`view_schema`]: the `view` field of the two projection schemas is
//!   generated from the Rust views ([`CustomerView`], [`OrderView`]); run
//!   `make schemas` after changing one.
//! - [`registry`]: a Confluent schema registry client; [`registry::bind_topics`]
//!   gives the codec the ids it frames Confluent payloads with.

mod codec;
mod compat;
mod error;
mod records;
pub mod registry;
mod schema;
pub mod view_schema;

pub use codec::{
    AvroCodec, CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, SINGLE_OBJECT_HEADER_LEN,
    SINGLE_OBJECT_MARKER, WireFormat,
};
pub use compat::{
    CheckDirError, CompatError, SchemaOutcome, SchemaReport, Side, check_backward, check_dir,
};
pub use error::{Error, Result};
pub use records::{
    AddressView, AvroJson, AvroRecord, AvroType, CheckpointView, CommitMarker, ConsentView,
    ConvertedView, CurrencyRevenueView, CustomerProjection, CustomerView, EmptyDefault,
    IdentityValueView, InputPosition, LedgerEntryView, LineItemView, MergedView, MoneyView, Names,
    OrderFiguresView, OrderProjection, OrderSummaryView, OrderView, PayoutProjection,
    RECEIVED_AT_HEADER, RawEncryption, RawEvent, ReportingFiguresView, ReportingRevenueView,
    ReturnView, ShipmentView, StateKind, StateRecord, TicketView, TimestampMillis, TotalsView,
    TouchCountsView, TouchView, Trigger, UtmView, Verification, VerificationStatus, epoch_millis,
};
pub use schema::{Fingerprint, NAMESPACE, RecordKind, crc64_avro, parsing_canonical_form};

/// The apache-avro crate this codec is built on, for callers that need its types
/// (e.g. [`apache_avro::Schema`] from [`AvroCodec::schema`]).
pub use apache_avro;
