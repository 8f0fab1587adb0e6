//! Integration tests of storefold, in one binary so that it is linked once.

mod cli;
mod common;
mod dev;
mod erase;
mod identity;
mod ingest;
mod journeys;
mod operator;
mod process_crash;
mod providers;
mod reconcile;
mod run;
mod shredding;
mod sink_postgres;
