//! The one list of sinks.
//!
//! Each sink lives in its own directory (`postgres/`, `hubspot/`, `webhook/`)
//! with its writer, its unit tests, the type of its `[sinks.<name>]` section
//! (`config.rs`: defaults, checks, redacted `Debug`) and a [`SinkSpec`]: its
//! name, its section's checks and example, and how to build it from the
//! configuration. [`SINKS`] names every spec once (one line of `sinks!` in
//! `lib.rs`, which also declares the sink's module); from it follow
//! `storefold sink <name>` (its choices and help), the sinks `storefold run`
//! starts, the sections the configuration may have ([`check`]), the
//! dead-letter topics ([`names`], passed to
//! `storefold_runtime::kafka::topic_specs`) and the processor's dead-letter
//! gauges.

use std::time::Duration;

use prometheus::Registry;
use serde::de::DeserializeOwned;
use storefold_runtime::config::{Config, ConfigError};

use crate::runner::RunOptions;
use crate::{BoxFuture, BoxedSink, WriteError};

/// Every sink storefold has, in the order `--help` lists them: the list of
/// `sinks!` in `lib.rs`, which also declares each sink's module.
pub static SINKS: &[&dyn SinkSpec] = crate::SPECS;

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
    /// A working `[sinks.<name>]` section (header included), with literal
    /// values only: a unit test parses and checks it.
    fn example(&self) -> &'static str;
    /// The runner settings of the sink's section, parsed and checked; `None`
    /// when the configuration has no `[sinks.<name>]`.
    fn settings(&self, config: &Config) -> Result<Option<SinkSettings>, ConfigError>;
    /// Parses and checks the sink's section, when present, against the whole
    /// configuration (a sink may depend on other settings, as HubSpot on the
    /// tenants). By default, what [`settings`](Self::settings) does.
    fn check(&self, config: &Config) -> Result<(), ConfigError> {
        self.settings(config).map(drop)
    }
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
        .filter(|s| config.sinks.section(s.name()).is_some())
        .collect()
}

/// Checks the configuration's sink sections: each `[sinks.<x>]` must name a
/// registered sink, and each present section must parse and pass its sink's
/// checks. Every role calls it when it loads the configuration, so a wrong
/// section stops any of them at start, not only the sink's own.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    for name in config.sinks.sections.keys() {
        if find(name).is_none() {
            return Err(ConfigError::Invalid(format!(
                "unknown sink section [sinks.{name}]; the sinks are: {}",
                names().join(", ")
            )));
        }
    }
    SINKS.iter().try_for_each(|s| s.check(config))
}

/// `[sinks.<name>]` read as `T` and passed through `check` (what
/// deserialisation cannot check); `None` without the section. Errors name the
/// key (`sinks.<name>.<key>`) as the rest of the configuration's do.
pub fn parse_section<T: DeserializeOwned>(
    config: &Config,
    name: &str,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<Option<T>, ConfigError> {
    let Some(table) = config.sinks.section(name) else {
        return Ok(None);
    };
    let section: T =
        serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let mut key = format!("sinks.{name}");
            if e.path().iter().next().is_some() {
                key = format!("{key}.{}", e.path());
            }
            ConfigError::Key {
                key,
                message: e.into_inner().to_string(),
            }
        })?;
    check(&section).map_err(ConfigError::Invalid)?;
    Ok(Some(section))
}

/// The message for a sink asked for without its section.
pub fn not_configured(name: &str) -> String {
    format!(
        "sink {name} is not configured: add a [sinks.{name}] section to the configuration \
         (see storefold.example.toml)"
    )
}

/// For a spec's `build`: the section its type's `from_config` read, or a
/// fatal error saying what is wrong with it or that it is missing.
pub(crate) fn required<T>(
    name: &str,
    section: Result<Option<T>, ConfigError>,
) -> Result<T, WriteError> {
    section
        .map_err(|e| WriteError::Fatal {
            message: e.to_string(),
        })?
        .ok_or_else(|| WriteError::Fatal {
            message: not_configured(name),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    /// storefold.example.toml with its commented `[sinks.<name>]` sections
    /// switched on.
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

    /// Every spec's own example, alone in a configuration.
    fn own_example(spec: &dyn SinkSpec) -> Config {
        Config::from_toml_str(spec.example(), no_env())
            .unwrap_or_else(|e| panic!("{}: the example does not load: {e}", spec.name()))
    }

    #[test]
    fn names_are_unique_config_keys_and_topic_suffixes() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SINKS.len(), "two specs share a name");
        for s in SINKS {
            assert!(
                !s.name().is_empty()
                    && s.name()
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}: a sink name is a config key, a topic suffix and a CLI word",
                s.name()
            );
            assert!(!s.about().is_empty(), "{}: no help line", s.name());
            assert_eq!(find(s.name()).map(|f| f.name()), Some(s.name()));
        }
        assert!(find("nowhere").is_none());
        // The dead-letter topics follow the registry.
        let kafka = storefold_runtime::config::KafkaConfig::default();
        let topics = storefold_runtime::kafka::topic_specs(&kafka, &super::names());
        let prefix = format!("{}dlq.sink.", kafka.topic_prefix);
        let dlqs: Vec<&str> = topics
            .iter()
            .filter_map(|t| t.name.strip_prefix(&prefix))
            .collect();
        assert_eq!(dlqs, super::names());
    }

    #[test]
    fn every_sink_has_an_example_that_loads_and_passes_its_checks() {
        for s in SINKS {
            let config = own_example(*s);
            let sections: Vec<&String> = config.sinks.sections.keys().collect();
            assert_eq!(sections, [s.name()], "{}: the example's sections", s.name());
            check(&config).unwrap_or_else(|e| panic!("{}: {e}", s.name()));
            let settings = s
                .settings(&config)
                .unwrap_or_else(|e| panic!("{}: {e}", s.name()))
                .unwrap_or_else(|| panic!("{}: the example's section is not read", s.name()));
            assert!(settings.batch_size > 0, "{}", s.name());
            assert!(
                settings.group_id.contains(s.name()),
                "{}: default group {:?}",
                s.name(),
                settings.group_id
            );
            assert_eq!(configured(&config).len(), 1, "{}", s.name());
            // Another sink's spec finds nothing in it.
            for other in SINKS.iter().filter(|o| o.name() != s.name()) {
                assert_eq!(other.settings(&config).ok(), Some(None), "{}", other.name());
            }
        }
    }

    #[test]
    fn the_example_configuration_names_only_sinks_that_load() {
        let config = example();
        check(&config).expect("the uncommented example's sink sections");
        assert!(
            !config.sinks.sections.is_empty(),
            "the example shows at least one sink section"
        );
        for name in config.sinks.sections.keys() {
            let spec = find(name).expect("a registered sink");
            assert!(
                matches!(spec.settings(&config), Ok(Some(_))),
                "{name}: its section is read"
            );
        }
        let none = Config::from_toml_str("", no_env()).expect("empty");
        assert!(configured(&none).is_empty());
        check(&none).expect("no sink at all");
        for s in SINKS {
            assert_eq!(s.settings(&none).ok(), Some(None), "{}", s.name());
        }
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

    #[test]
    fn check_refuses_unknown_sections_and_bad_ones() {
        let config = Config::from_toml_str("[sinks.hubspott]\ntoken = \"t\"\n", no_env())
            .expect("runtime keeps any table");
        let err = check(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "unknown sink section [sinks.hubspott]; the sinks are: {}",
                names().join(", ")
            )
        );
        for s in SINKS {
            // The example with a key no sink has.
            let text = s.example().replacen(
                &format!("[sinks.{}]\n", s.name()),
                &format!("[sinks.{}]\nno_such_key = 1\n", s.name()),
                1,
            );
            let config = Config::from_toml_str(&text, no_env()).expect("raw");
            let err = check(&config).expect_err(s.name()).to_string();
            assert!(
                err.contains(&format!("sinks.{}", s.name())) && err.contains("no_such_key"),
                "{}: {err}",
                s.name()
            );
            assert!(s.settings(&config).is_err(), "{}", s.name());
        }
    }

    #[tokio::test]
    async fn building_without_the_section_names_it() {
        let config = Config::from_toml_str("", no_env()).expect("empty");
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
        let spec = find("webhook").expect("webhook");
        let config = own_example(spec);
        let registry = Registry::new();
        let sink = spec.build(&config, &registry).await.expect("webhook sink");
        assert_eq!(crate::Sink::name(&sink), "webhook");
        assert!(!crate::Sink::streams(&sink).is_empty());
    }
}
