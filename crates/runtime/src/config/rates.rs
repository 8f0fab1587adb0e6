//! `[rates]`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[rates]`: daily exchange rates the operator supplies (see `docs/books.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatesConfig {
    /// A CSV file of `date,from,to,rate` lines (`2025-03-01,USD,EUR,0.9231`),
    /// read when the processor starts. `None`: no rates, amounts in other
    /// currencies than a tenant's reporting currency stay unconverted.
    pub file: Option<PathBuf>,
    /// An amount without a rate on its own date converts at the newest earlier
    /// rate at most this many days old; beyond that it stays unconverted.
    pub max_age_days: u32,
}

impl Default for RatesConfig {
    fn default() -> Self {
        Self {
            file: None,
            max_age_days: 7,
        }
    }
}
