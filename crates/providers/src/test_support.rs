//! The harness every provider's tests share: fixtures, the shared conformance
//! corpus (`shared/conformance/<provider>`, real payloads read in place) and
//! [`Harness`], which takes a payload the whole way a webhook goes (signed as the
//! provider signs it, verified, described, its headers kept, mapped).

use std::path::{Path, PathBuf};

use storefold_core::Envelope;
use time::OffsetDateTime;

use crate::{
    Credentials, Headers, Inbound, MapContext, MapError, MapOptions, ProviderKind, RawInput,
    Signed, WebhookRequest,
};

/// Whether this run is CI's (`CI` set to anything but empty, `0` or `false`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The conformance corpus directory of `provider`, or `None` when it is absent,
/// after a loud SKIPPED line on stderr (so a checkout without the corpus cannot
/// pass the conformance tests silently). Under CI a missing corpus fails the test.
pub(crate) fn conformance_dir(provider: &str) -> Option<PathBuf> {
    let dir = conformance_root().join(provider);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !under_ci(),
        "conformance corpus not found at {} under CI: the {provider} conformance checks \
         must run there (the corpus is ../shared/conformance beside the checkout)",
        dir.display()
    );
    eprintln!(
        "SKIPPED: conformance corpus not found at {} — {provider} conformance checks did NOT run",
        dir.display()
    );
    None
}

/// Every provider with a conformance corpus, with its directory; empty (after a
/// SKIPPED line) when the corpus is absent, a failure under CI.
pub(crate) fn conformance_corpora() -> Vec<(ProviderKind, PathBuf)> {
    let root = conformance_root();
    if !root.is_dir() {
        assert!(
            !under_ci(),
            "conformance corpus not found at {} under CI",
            root.display()
        );
        eprintln!(
            "SKIPPED: conformance corpus not found at {}",
            root.display()
        );
        return Vec::new();
    }
    ProviderKind::ALL
        .iter()
        .map(|&k| (k, root.join(k.name())))
        .filter(|(_, dir)| dir.is_dir())
        .collect()
}

/// `shared/conformance` beside the checkout.
fn conformance_root() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance"
    ))
    .to_path_buf()
}

/// The names of the `.json` files in a corpus directory, sorted.
pub(crate) fn json_file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// The names of the `.json`, `.jsonl` (JSON lines: the ERP feed) and `.csv`
/// (settlement reports) files in a fixture directory, sorted.
pub(crate) fn fixture_file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".jsonl") || n.ends_with(".csv"))
        .collect();
    names.sort();
    names
}

/// The bytes of `name` in `dir`, panicking with the path when unreadable.
pub(crate) fn read_file(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `name` in `dir` as JSON, panicking with the path when unreadable.
pub(crate) fn read_json(dir: &Path, name: &str) -> serde_json::Value {
    let path = dir.join(name);
    serde_json::from_slice(&read_file(dir, name))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture directory of our own for `provider`: `src/<provider>/fixtures`.
pub(crate) fn fixture_dir(provider: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(provider)
        .join("fixtures")
}

/// A fixture of our own: `src/<provider>/fixtures/<name>`.
pub(crate) fn fixture(provider: &str, name: &str) -> Vec<u8> {
    read_file(&fixture_dir(provider), name)
}

/// One delivery that went the whole way: what the ingest recorded and what the
/// processor mapped.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Topic and idempotency id from `describe`.
    pub(crate) inbound: Inbound,
    /// The headers kept in the raw event (`kept_headers` of the request's).
    pub(crate) kept: Headers,
    /// The body as sent (Adyen's signature goes inside it).
    pub(crate) body: Vec<u8>,
}

/// A provider's test bench: the secret it signs with, the credentials the
/// tenant verifies with, the clock, the tenant and its mapping options.
pub(crate) struct Harness {
    pub(crate) kind: ProviderKind,
    /// What `sign` takes (for PayPal the private key PEM).
    pub(crate) signing_secret: String,
    /// What `verify` takes (for PayPal the certificate and webhook id).
    pub(crate) credentials: Credentials,
    pub(crate) now: OffsetDateTime,
    pub(crate) received_at: OffsetDateTime,
    pub(crate) tenant: String,
    pub(crate) options: MapOptions,
    /// Headers a real delivery carries besides the signature (shop domain, API
    /// version, ...).
    pub(crate) extra_headers: Vec<(String, String)>,
}

impl Harness {
    /// A bench for `kind` whose signing secret and verifying secret are `secret`
    /// (every HMAC and URL-token scheme), tenant `t1`, default options.
    pub(crate) fn new(kind: ProviderKind, secret: &str, now: OffsetDateTime) -> Harness {
        Harness {
            kind,
            signing_secret: secret.to_string(),
            credentials: Credentials::new(secret),
            now,
            received_at: now,
            tenant: "t1".to_string(),
            options: MapOptions::default(),
            extra_headers: Vec::new(),
        }
    }

    /// Verifies with `credentials` instead (PayPal's certificate).
    pub(crate) fn verifying_with(mut self, credentials: Credentials) -> Harness {
        self.credentials = credentials;
        self
    }

    pub(crate) fn tenant(mut self, tenant: &str) -> Harness {
        self.tenant = tenant.to_string();
        self
    }

    pub(crate) fn options(mut self, options: MapOptions) -> Harness {
        self.options = options;
        self
    }

    pub(crate) fn received_at(mut self, at: OffsetDateTime) -> Harness {
        self.received_at = at;
        self
    }

    /// Adds a header every delivery carries.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Harness {
        self.extra_headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// `body` signed as the provider signs it for `topic`.
    pub(crate) fn sign(&self, topic: &str, body: &[u8]) -> Signed {
        self.kind
            .sign(&self.signing_secret, topic, body, self.now)
            .unwrap_or_else(|e| panic!("{} signs: {e}", self.kind))
    }

    /// Signs, verifies (which must pass) and describes `body`, as the ingest
    /// does; the `Err` is `describe`'s.
    pub(crate) fn receive(&self, topic: &str, body: &[u8]) -> Result<Delivery, MapError> {
        let signed = self.sign(topic, body);
        let mut headers = Headers::from_pairs(signed.headers.iter().map(|(k, v)| (k, v)));
        for (k, v) in &self.extra_headers {
            headers.insert(k, v);
        }
        let req = WebhookRequest {
            headers: &headers,
            body: &signed.body,
            url_token: signed.url_token.as_deref(),
        };
        self.kind
            .verify(&self.credentials, &req, self.now)
            .unwrap_or_else(|e| panic!("{}: the signed request verifies: {e}", self.kind));
        let inbound = self.kind.describe(&req)?;
        let kept = headers.select(self.kind.kept_headers());
        Ok(Delivery {
            inbound,
            kept,
            body: signed.body,
        })
    }

    /// Maps a received delivery as the processor does (from the kept headers).
    pub(crate) fn map(&self, delivery: &Delivery) -> Result<Vec<Envelope>, MapError> {
        let ctx = MapContext {
            tenant: &self.tenant,
            options: &self.options,
        };
        let input = RawInput {
            topic: &delivery.inbound.topic,
            event_id: &delivery.inbound.event_id,
            headers: &delivery.kept,
            body: &delivery.body,
            received_at: self.received_at,
        };
        self.kind.map(&ctx, &input)
    }

    /// The whole path: receive (sign, verify, describe) then map.
    pub(crate) fn deliver(
        &self,
        topic: &str,
        body: &[u8],
    ) -> Result<(Inbound, Vec<Envelope>), MapError> {
        let delivery = self.receive(topic, body)?;
        let events = self.map(&delivery)?;
        Ok((delivery.inbound, events))
    }
}
