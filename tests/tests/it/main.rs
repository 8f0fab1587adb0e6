//! Integration tests of storefold-e2e, in one binary so that it is linked once.

mod docs;
mod ops;
