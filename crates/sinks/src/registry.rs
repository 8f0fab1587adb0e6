//! The one list of sinks.
//!
//! Each sink lives in its own directory (`postgres/`, `hubspot/`, `webhook/`)
//! with its writer, its unit tests and a [`SinkSpec`]: its name, the settings of
//! its `[sinks.<name>]` section, and how to build it from the configuration.
//! [`SINKS`] names every spec once; from it follow `storefold sink <name>` (its
//! choices and help), the sinks `storefold run` starts, and the checks that the
//! dead-letter topics (`storefold_runtime::kafka::SINKS`) and the Helm chart
//! list the same sinks.

use std::time::Duration;

use prometheus::Registry;
use storefold_runtime::config::Config;

use crate::hubspot::HubSpotSpec;
use crate::postgres::PostgresSpec;
use crate::runner::RunOptions;
use crate::webhook::WebhookSpec;
use crate::{BoxFuture, BoxedSink, WriteError};

/// Every sink storefold has, in the order `--help` lists them.
pub static SINKS: &[&dyn SinkSpec] = &[&PostgresSpec, &HubSpotSpec, &WebhookSpec];

/// How the runner consumes for one sink, read from its config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// The sink's consumer group (`group_id`).
    pub group_id: String,
    /// Records per write, at most (`batch_size`).
    pub batch_size: usize,
    /// How long a batch waits to fill, in milliseconds (`linger_ms`).
    pub linger_ms: u64,
}

impl SinkSettings {
    /// The runner's options; `exit_when_idle` makes the run return once caught
    /// up and idle that long.
    pub fn run_options(&self, exit_when_idle: Option<Duration>) -> RunOptions {
        RunOptions {
            group_id: self.group_id.clone(),
            batch_size: self.batch_size,
            linger: Duration::from_millis(self.linger_ms),
            exit_when_idle,
        }
    }
}

/// One kind of sink, as the CLI and `storefold run` see it. Object-safe: the
/// registry holds `&'static dyn SinkSpec`.
pub trait SinkSpec: Sync + std::fmt::Debug {
    /// The sink's name: `storefold sink <name>`, `[sinks.<name>]`, the topic
    /// `dlq.sink.<name>` and the `sink` label of the metrics. The sink it builds
    /// reports the same [`Sink::name`](crate::Sink::name).
    fn name(&self) -> &'static str;
    /// One line for `--help`: what the sink does.
    fn about(&self) -> &'static str;
    /// The runner settings of the sink's section; `None` when the configuration
    /// has no `[sinks.<name>]`.
    fn settings(&self, config: &Config) -> Option<SinkSettings>;
    /// Builds the sink from its section (connecting where it must, so that a
    /// wrong address or credential is reported before anything runs). Fails
    /// with [`not_configured`]'s message when the section is missing.
    fn build<'a>(
        &'a self,
        config: &'a Config,
        registry: &'a Registry,
    ) -> BoxFuture<'a, Result<BoxedSink, WriteError>>;
}

/// The spec named `name`.
pub fn find(name: &str) -> Option<&'static dyn SinkSpec> {
    SINKS.iter().copied().find(|s| s.name() == name)
}

/// The sinks' names, in registry order.
pub fn names() -> Vec<&'static str> {
    SINKS.iter().map(|s| s.name()).collect()
}

/// The sinks whose section the configuration has, in registry order.
pub fn configured(config: &Config) -> Vec<&'static dyn SinkSpec> {
    SINKS
        .iter()
        .copied()
        .filter(|s| s.settings(config).is_some())
        .collect()
}

/// The message for a sink asked for without its section.
pub fn not_configured(name: &str) -> String {
    format!(
        "sink {name} is not configured: add a [sinks.{name}] section to the configuration \
         (see storefold.example.toml)"
    )
}

/// The [`WriteError`] a spec's `build` returns without its section.
pub(crate) fn missing_section(name: &str) -> WriteError {
    WriteError::Fatal {
        message: not_configured(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// storefold.example.toml with its commented `[sinks.<name>]` sections
    /// switched on, so that every sink has its section.
    fn example() -> Config {
        let text = include_str!("../../../storefold.example.toml");
        let mut out = Vec::new();
        let mut inside = false;
        for line in text.lines() {
            if line.starts_with("# [sinks.") {
                inside = true;
            }
            if line.trim().is_empty() {
                inside = false;
            }
            match (inside, line.strip_prefix("# ")) {
                (true, Some(rest)) if !rest.starts_with("# ") => out.push(rest.to_string()),
                (true, _) => {}
                (false, _) => out.push(line.to_string()),
            }
        }
        // Every `${NAME}` the uncommented sections use gets a stand-in value.
        let text = out.join("\n");
        let env: Vec<(String, String)> = text
            .split("${")
            .skip(1)
            .filter_map(|rest| rest.split_once('}'))
            .filter(|(name, _)| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
            .map(|(name, _)| (name.to_string(), format!("test-{}", name.to_lowercase())))
            .collect();
        Config::from_toml_str(&text, env).expect("uncommented example")
    }

    #[test]
    fn names_are_unique_and_match_the_dead_letter_topics() {
        let mut names = names();
        assert_eq!(names, storefold_runtime::kafka::SINKS.to_vec());
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SINKS.len(), "two specs share a name");
        for s in SINKS {
            assert!(
                s.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}: a sink name is a config key, a topic suffix and a CLI word",
                s.name()
            );
            assert!(!s.about().is_empty(), "{}: no help line", s.name());
            assert_eq!(find(s.name()).map(|f| f.name()), Some(s.name()));
        }
        assert!(find("nowhere").is_none());
    }

    #[test]
    fn every_sink_reads_its_section_and_only_its_own() {
        let config = example();
        let none = Config::from_toml_str("", Vec::<(String, String)>::new()).expect("empty");
        assert!(configured(&none).is_empty());
        for s in SINKS {
            let settings = s
                .settings(&config)
                .unwrap_or_else(|| panic!("{}: the example's section is not read", s.name()));
            assert!(settings.batch_size > 0, "{}", s.name());
            assert!(
                settings.group_id.contains(s.name()),
                "{}: default group {:?}",
                s.name(),
                settings.group_id
            );
            assert_eq!(s.settings(&none), None, "{}", s.name());
        }
        assert_eq!(configured(&config).len(), SINKS.len());
        let opts = SinkSettings {
            group_id: "g".into(),
            batch_size: 7,
            linger_ms: 250,
        }
        .run_options(Some(Duration::from_secs(1)));
        assert_eq!(opts.group_id, "g");
        assert_eq!(opts.batch_size, 7);
        assert_eq!(opts.linger, Duration::from_millis(250));
        assert_eq!(opts.exit_when_idle, Some(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn building_without_the_section_names_it() {
        let config = Config::from_toml_str("", Vec::<(String, String)>::new()).expect("empty");
        let registry = Registry::new();
        for s in SINKS {
            let err = match s.build(&config, &registry).await {
                Ok(_) => panic!("{} built without its section", s.name()),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(&format!("[sinks.{}]", s.name())),
                "{}: {err}",
                s.name()
            );
        }
    }

    #[tokio::test]
    async fn a_built_sink_is_the_spec_it_came_from() {
        // The webhook sink builds without connecting anywhere.
        let config = example();
        let registry = Registry::new();
        let spec = find("webhook").expect("webhook");
        let sink = spec.build(&config, &registry).await.expect("webhook sink");
        assert_eq!(crate::Sink::name(&sink), "webhook");
        assert!(!crate::Sink::streams(&sink).is_empty());
    }
}
