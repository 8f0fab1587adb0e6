//! Integration tests of storefold-sinks, in one binary so that it is linked once.

mod hubspot;
mod hubspot_erasure;
mod postgres;
mod postgres_tls;
mod schema_registry;
mod sink_fixtures;
mod webhook;
