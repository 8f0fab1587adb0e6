//! Integration tests of storefold-processor, in one binary so that it is linked once.

mod common;
mod compaction;
mod erasure;
mod fold;
mod parked;
mod poison;
mod rebalance;
mod retention;
mod schema_registry;
mod ui;
