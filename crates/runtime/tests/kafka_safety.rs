//! Kafka safety settings: what `[kafka.properties]` may not override,
//! `min.insync.replicas` on created topics and what `topics check` says of it,
//! and the processor's state bounds.

use storefold_runtime::config::{Config, RESERVED_KAFKA_PROPERTIES};
use storefold_runtime::kafka::{Finding, min_insync_finding, topic_specs};

fn load(toml: &str) -> Result<Config, String> {
    Config::from_toml_str(toml, Vec::new()).map_err(|e| e.to_string())
}

#[test]
fn every_safety_property_is_refused_naming_its_key() {
    for (key, _) in RESERVED_KAFKA_PROPERTIES {
        let toml = format!("[kafka.properties]\n\"{key}\" = \"1\"\n");
        let err = load(&toml).expect_err(key);
        assert!(
            err.contains(&format!("kafka.properties.\"{key}\" may not be set")),
            "{key}: {err}"
        );
    }
    // Whatever its case or surrounding blanks.
    let err = load("[kafka.properties]\n\"  ACKS \" = \"1\"\n").expect_err("ACKS");
    assert!(err.contains("\"acks\" may not be set"), "{err}");
    // Security and tuning stay free.
    let ok = load(
        "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
         \"message.max.bytes\" = \"2000000\"\n\"session.timeout.ms\" = \"6000\"\n\
         \"max.poll.interval.ms\" = \"600000\"\n",
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn min_insync_replicas_defaults_to_two_within_the_replication_factor() {
    let c = load("").expect("defaults");
    assert_eq!(c.kafka.min_insync(), 2);
    let c = load("[kafka]\nreplication_factor = 1\n").expect("one replica");
    assert_eq!(c.kafka.min_insync(), 1);
    let c = load("[kafka]\nreplication_factor = 5\nmin_insync_replicas = 3\n").expect("3 of 5");
    assert_eq!(c.kafka.min_insync(), 3);
    assert!(
        topic_specs(&c.kafka, &["postgres"])
            .iter()
            .all(|s| s.min_insync_replicas == 3)
    );
    for bad in ["min_insync_replicas = 0", "min_insync_replicas = 4"] {
        let err = load(&format!("[kafka]\nreplication_factor = 3\n{bad}\n")).expect_err(bad);
        assert!(err.contains("kafka.min_insync_replicas"), "{err}");
    }
}

#[test]
fn topics_check_reports_a_different_min_insync_replicas() {
    let c = load("").expect("defaults");
    let spec = &topic_specs(&c.kafka, &[])[0];
    assert!(matches!(
        min_insync_finding(spec, Some("2")),
        Finding::Ok(_)
    ));
    for reported in ["1", "3"] {
        match min_insync_finding(spec, Some(reported)) {
            Finding::Problem(m) => {
                assert!(m.contains(&spec.name), "{m}");
                assert!(
                    m.contains(&format!("min.insync.replicas={reported}")),
                    "{m}"
                );
                assert!(m.contains("kafka.min_insync_replicas"), "{m}");
            }
            other => panic!("{reported}: {other:?}"),
        }
    }
    assert!(matches!(
        min_insync_finding(spec, None),
        Finding::Unverified(_)
    ));
}

#[test]
fn state_bounds_are_read_and_checked() {
    let c = load(
        "[processor]\nmax_touches = 7\nmax_touch_values = 3\nmax_tickets = 9\n\
         max_listed_orders = 11\nmax_checkpoints = 13\n",
    )
    .expect("bounds");
    let limits = c.fold_config().expect("fold config").limits;
    assert_eq!(
        (
            limits.touches,
            limits.touch_values,
            limits.tickets,
            limits.listed_orders,
            limits.checkpoints
        ),
        (7, 3, 9, 11, 13)
    );
    for key in [
        "max_touches",
        "max_touch_values",
        "max_tickets",
        "max_listed_orders",
        "max_checkpoints",
    ] {
        let err = load(&format!("[processor]\n{key} = 0\n")).expect_err(key);
        assert!(err.contains(&format!("processor.{key}")), "{err}");
    }
}
