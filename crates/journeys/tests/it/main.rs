//! Integration tests of storefold-journeys, in one binary so that it is linked once.

mod library;
mod property;
mod typed_view;
