//! What the operator's commands (`storefold erase`, `storefold identity`)
//! share: a command of the `operator` provider signed with the tenant's
//! operator secret and posted to the ingest, and the query API their dry runs
//! read.

use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Failed;
use crate::webhook_cmd::{ingest_base, local_url, post, sign_webhook};

/// Where a command is posted, and what it is signed with.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// Base URL of the ingest; defaults to http://<ingest.listen>.
    #[arg(long, value_name = "URL")]
    ingest: Option<String>,
    /// The operator signing secret; defaults to the tenant's
    /// `[tenants.<id>.providers.operator] secret`.
    #[arg(long, env = "STOREFOLD_OPERATOR_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

/// The query API a dry run reads.
#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// Base URL of the query API, for --dry-run; defaults to
    /// http://<operator.listen> (`storefold run`; for `storefold process` give
    /// its processor.listen).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// An operator token that may read the tenant, for --dry-run.
    #[arg(long, env = "STOREFOLD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Signs the command `topic` for `tenant` with the operator secret (`--secret`,
/// else the tenant's configuration) and posts it to the ingest; prints
/// `command id: <id>`, then the ingest's answer. `body` makes the command from
/// its id (`command_id`, else a new random UUID) and the time it is signed at.
/// An error with exit code 4 unless the answer is 2xx.
pub(crate) async fn send(
    config: Option<&Config>,
    tenant: &str,
    args: &SendArgs,
    topic: &str,
    command_id: Option<&str>,
    body: impl FnOnce(&str, OffsetDateTime) -> Result<Vec<u8>>,
) -> Result<()> {
    let secret = match &args.secret {
        Some(s) => s.clone(),
        None => config
            .and_then(|c| c.provider(tenant, ProviderKind::Operator))
            .and_then(|p| p.signing_secret(ProviderKind::Operator))
            .with_context(|| {
                format!(
                    "no secret: pass --secret, or configure tenants.{tenant}.providers.operator"
                )
            })?,
    };
    let base = ingest_base(args.ingest.as_deref(), config, "--ingest")?;
    let now = OffsetDateTime::now_utc();
    let command_id = command_id.map_or_else(new_command_id, str::to_string);
    let body = body(&command_id, now)?;
    let signed = sign_webhook(ProviderKind::Operator, tenant, &secret, topic, &body, now)?;
    writeln!(std::io::stdout().lock(), "command id: {command_id}")?;
    post(
        &format!("{base}{}", signed.path),
        &signed.headers,
        signed.body,
    )
    .await
}

/// A random UUID (version 4).
pub(crate) fn new_command_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A command body: `command_id`, `requested_at` (`now`), the command's own
/// `fields` (a JSON object) and the `reason` when one is given.
pub(crate) fn command_body(
    command_id: &str,
    now: OffsetDateTime,
    reason: Option<&str>,
    fields: Value,
) -> Result<Vec<u8>> {
    let mut body = json!({
        "command_id": command_id,
        "requested_at": now.format(&Rfc3339).context("formatting the time")?,
    });
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    Ok(serde_json::to_vec(&body)?)
}

/// The query API of one tenant, with an operator token.
pub(crate) struct QueryApi {
    client: reqwest::Client,
    base: String,
    token: String,
    tenant: String,
}

impl QueryApi {
    /// `--api` (else `http://<operator.listen>`) with `--token`; an error
    /// before any request when either is missing.
    pub(crate) fn new(config: Option<&Config>, args: &QueryArgs, tenant: &str) -> Result<QueryApi> {
        let base = match (&args.api, config) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Some(c)) => local_url(c.operator.listen),
            (None, None) => bail!("no --api and no configuration to take operator.listen from"),
        };
        let token = args
            .token
            .clone()
            .context("--dry-run reads the query API: pass --token (or STOREFOLD_TOKEN)")?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("HTTP client")?;
        Ok(QueryApi {
            client,
            base,
            token,
            tenant: tenant.to_string(),
        })
    }

    fn customers_url(&self) -> String {
        format!("{}/v1/tenants/{}/customers", self.base, self.tenant)
    }

    /// The customer that has the identity `kind` (`email`, `phone`) `value`
    /// now, as the query API shows it; `None` when no customer has it.
    pub(crate) async fn find(&self, kind: &str, value: &str) -> Result<Option<Value>> {
        let url = self.customers_url();
        let mut target =
            reqwest::Url::parse(&url).with_context(|| format!("--api {}", self.base))?;
        target.query_pairs_mut().append_pair(kind, value);
        // The value stays out of the messages: the URL is shown without it.
        self.get(target, &format!("{url}?{kind}=…")).await
    }

    /// The customer `id` is now (following merges: its `customer_id` is then
    /// the one it was merged into); `None` when there is no such customer.
    pub(crate) async fn customer(&self, id: &str) -> Result<Option<Value>> {
        let url = format!("{}/{id}", self.customers_url());
        let target = reqwest::Url::parse(&url).with_context(|| format!("--api {}", self.base))?;
        self.get(target, &url).await
    }

    async fn get(&self, target: reqwest::Url, shown: &str) -> Result<Option<Value>> {
        let resp = self
            .client
            .get(target)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {shown}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND && text.contains("no_such_customer") {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Failed(4, format!("GET {shown} answered {status}: {text}")).into());
        }
        let doc: Value = serde_json::from_str(&text).context("the answer is not JSON")?;
        if doc["customer_id"].as_str().is_none() {
            bail!("GET {shown}: the answer has no customer_id");
        }
        Ok(Some(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_version_4_uuids_and_differ() {
        let a = new_command_id();
        let b = new_command_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn a_body_has_the_id_the_time_its_fields_and_the_reason() {
        let at = time::macros::datetime!(2025-04-02 08:15 UTC);
        let body = command_body("c-1", at, None, json!({"a": {"email": "x@y.z"}})).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"command_id": "c-1", "requested_at": "2025-04-02T08:15:00Z",
                   "a": {"email": "x@y.z"}})
        );
        let body = command_body("c-2", at, Some("why"), json!({})).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["reason"], "why");
    }
}
