//! The CLI's provider choices come from the providers' registry: every
//! registered provider is offered, in `--help` and in the refusal of an unknown
//! name, and nothing else.

use std::process::Command;

use storefold_providers::ProviderKind;

fn storefold(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The `[possible values: a, b, ...]` clap prints for `--provider`.
fn possible_values(help: &str) -> Vec<String> {
    let start = help
        .find("[possible values: ")
        .unwrap_or_else(|| panic!("no possible values in:\n{help}"))
        + "[possible values: ".len();
    let end = start + help[start..].find(']').unwrap();
    help[start..end]
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

fn registry() -> Vec<String> {
    ProviderKind::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect()
}

#[test]
fn normalize_and_webhook_send_offer_every_registered_provider() {
    for cmd in [
        &["normalize", "--help"][..],
        &["webhook", "send", "--help"][..],
    ] {
        let (ok, stdout, stderr) = storefold(cmd);
        assert!(ok, "{cmd:?}: {stderr}");
        assert_eq!(possible_values(&stdout), registry(), "{cmd:?}");
    }
}

#[test]
fn an_unknown_provider_is_refused_with_the_registry() {
    for cmd in [
        &["normalize", "--provider", "magento", "x.json"][..],
        &[
            "webhook",
            "send",
            "--provider",
            "magento",
            "--tenant",
            "t",
            "x.json",
        ][..],
    ] {
        let (ok, _, stderr) = storefold(cmd);
        assert!(!ok, "{cmd:?}");
        let known = format!("known: {}", registry().join(" "));
        assert!(
            stderr.contains("unknown provider \"magento\"") && stderr.contains(&known),
            "{cmd:?}: {stderr}"
        );
    }
}

#[test]
fn webhook_send_asks_for_the_topic_of_the_providers_that_send_it_in_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, b"{}").unwrap();
    for &kind in ProviderKind::ALL {
        let Some(_) = kind.topic_header() else {
            continue;
        };
        let (ok, _, stderr) = storefold(&[
            "webhook",
            "send",
            "--provider",
            kind.name(),
            "--tenant",
            "t",
            "--secret",
            "s",
            "--url",
            "http://127.0.0.1:9",
            body.to_str().unwrap(),
        ]);
        assert!(!ok);
        assert!(
            stderr.contains(&format!("--topic is required for {}", kind.name())),
            "{kind}: {stderr}"
        );
    }
}
