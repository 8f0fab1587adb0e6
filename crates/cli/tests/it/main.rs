//! Integration tests of storefold, in one binary so that it is linked once.

mod common;
mod cli;
mod dev;
mod ingest;
mod journeys;
mod operator;
mod process_crash;
mod providers;
mod run;
mod sink_postgres;
