//! Integration tests of storefold-journeys, in one binary so that it is linked once.

mod library;
mod payouts;
mod property;
mod typed_view;
