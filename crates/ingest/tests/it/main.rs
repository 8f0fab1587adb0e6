//! Integration tests of storefold-ingest, in one binary so that it is linked once.

mod abuse;
mod common;
mod encryption;
mod http;
mod kafka;
mod schema_registry;
