//! Integration tests of storefold-testkit, in one binary so that it is linked once.

mod broker;
mod history;
