//! Integration tests of storefold-core, in one binary so that it is linked once.

mod fold;
mod ledger;
mod limits;
mod state;
