//! Integration tests of storefold-core, in one binary so that it is linked once.

mod decisions;
mod erasure;
mod fold;
mod inventory;
mod ledger;
mod limits;
mod payouts;
mod state;

/// A generated history in which every identity rule is at work: shared
/// phones, email changes through a store customer id, helpdesk callers
/// without an email.
fn every_identity_rule() -> storefold_scenario::ScenarioSpec {
    storefold_scenario::ScenarioSpec {
        customers: 12,
        shared_phone_pct: 60,
        email_change_pct: 50,
        helpdesk_phone_pct: 50,
        ..storefold_scenario::ScenarioSpec::default()
    }
}
