//! `storefold erase`: ask for the GDPR erasure of a customer as a signed
//! operator command (`customer/erase` of the `operator` provider), posted to the
//! ingest like any webhook so that it is kept in `raw.operator` and folded in
//! order; or, with `--dry-run`, show from the query API what it would erase.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use storefold_core::identity::{normalize_email, normalize_phone};
use storefold_providers::ProviderKind;
use storefold_providers::operator::ERASE_TOPIC;
use storefold_runtime::config::Config;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Failed;
use crate::webhook_cmd::{ingest_base, local_url, post, sign_webhook};

#[derive(Debug, clap::Args)]
pub(crate) struct EraseArgs {
    /// The tenant the customer belongs to.
    #[arg(long)]
    tenant: String,
    /// The customer's email address.
    #[arg(long, required_unless_present = "phone")]
    email: Option<String>,
    /// The customer's phone number, in international form (e.g. +14155550123).
    #[arg(long)]
    phone: Option<String>,
    /// Why, for the audit trail (kept with the command in raw.operator).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The command's id; the same id sent again is the same erasure (for a
    /// retry after a timeout). Default: a new random UUID.
    #[arg(long, value_name = "ID")]
    command_id: Option<String>,
    /// Base URL of the ingest; defaults to http://<ingest.listen>.
    #[arg(long, value_name = "URL")]
    ingest: Option<String>,
    /// The operator signing secret; defaults to the tenant's
    /// `[tenants.<id>.providers.operator] secret`.
    #[arg(long, env = "STOREFOLD_OPERATOR_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Send nothing: show from the query API what the erasure would remove.
    #[arg(long)]
    dry_run: bool,
    /// Base URL of the query API, for --dry-run; defaults to
    /// http://<operator.listen> (`storefold run`; for `storefold process` give
    /// its processor.listen).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// An operator token that may read the tenant, for --dry-run.
    #[arg(long, env = "STOREFOLD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The identities to erase, normalised as the fold keys them.
struct Subject {
    email: Option<String>,
    phone: Option<String>,
}

impl Subject {
    fn from_args(args: &EraseArgs) -> Result<Subject> {
        let email = args
            .email
            .as_deref()
            .map(|e| normalize_email(e).context("--email is not a valid email address"))
            .transpose()?;
        let phone = args
            .phone
            .as_deref()
            .map(|p| {
                normalize_phone(p, None).context(
                    "--phone is not a valid phone number in international form (+<country code><number>)",
                )
            })
            .transpose()?;
        if email.is_none() && phone.is_none() {
            bail!("give --email, --phone or both");
        }
        Ok(Subject { email, phone })
    }

    /// (query parameter, value) for each identity given.
    fn lookups(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(e) = &self.email {
            out.push(("email", e.as_str()));
        }
        if let Some(p) = &self.phone {
            out.push(("phone", p.as_str()));
        }
        out
    }
}

pub(crate) async fn run(config: Option<&Config>, args: EraseArgs) -> Result<()> {
    let subject = Subject::from_args(&args)?;
    if args.dry_run {
        return dry_run(config, &args, &subject).await;
    }
    let secret = match &args.secret {
        Some(s) => s.clone(),
        None => config
            .and_then(|c| c.provider(&args.tenant, ProviderKind::Operator))
            .and_then(|p| p.signing_secret(ProviderKind::Operator))
            .with_context(|| {
                format!(
                    "no secret: pass --secret, or configure tenants.{}.providers.operator",
                    args.tenant
                )
            })?,
    };
    let base = ingest_base(args.ingest.as_deref(), config, "--ingest")?;
    let now = OffsetDateTime::now_utc();
    let command_id = args.command_id.clone().unwrap_or_else(new_command_id);
    let body = command_body(&command_id, &subject, args.reason.as_deref(), now)?;
    let signed = sign_webhook(
        ProviderKind::Operator,
        &args.tenant,
        &secret,
        ERASE_TOPIC,
        &body,
        now,
    )?;
    writeln!(std::io::stdout().lock(), "command id: {command_id}")?;
    post(
        &format!("{base}{}", signed.path),
        &signed.headers,
        signed.body,
    )
    .await
}

/// A random UUID (version 4).
fn new_command_id() -> String {
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

/// The `customer/erase` body.
fn command_body(
    command_id: &str,
    subject: &Subject,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<u8>> {
    let mut body = json!({
        "command_id": command_id,
        "requested_at": now.format(&Rfc3339).context("formatting the time")?,
    });
    if let Some(e) = &subject.email {
        body["email"] = json!(e);
    }
    if let Some(p) = &subject.phone {
        body["phone"] = json!(p);
    }
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    Ok(serde_json::to_vec(&body)?)
}

async fn dry_run(config: Option<&Config>, args: &EraseArgs, subject: &Subject) -> Result<()> {
    let base = match (&args.api, config) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(c)) => local_url(c.operator.listen),
        (None, None) => bail!("no --api and no configuration to take operator.listen from"),
    };
    let token = args
        .token
        .as_deref()
        .context("--dry-run reads the query API: pass --token (or STOREFOLD_TOKEN)")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("HTTP client")?;
    let url = format!("{base}/v1/tenants/{}/customers", args.tenant);
    // Customer id → (its document, the identities given that found it).
    let mut found: BTreeMap<String, (Value, Vec<String>)> = BTreeMap::new();
    let mut missing = Vec::new();
    for (kind, value) in subject.lookups() {
        let mut target = reqwest::Url::parse(&url).with_context(|| format!("--api {base}"))?;
        target.query_pairs_mut().append_pair(kind, value);
        let resp = client
            .get(target)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND && text.contains("no_such_customer") {
            missing.push(format!("{kind} {value}"));
            continue;
        }
        if !status.is_success() {
            return Err(Failed(4, format!("GET {url}?{kind}=… answered {status}: {text}")).into());
        }
        let doc: Value = serde_json::from_str(&text).context("the answer is not JSON")?;
        let id = doc["customer_id"]
            .as_str()
            .context("the answer has no customer_id")?
            .to_string();
        found
            .entry(id)
            .or_insert_with(|| (doc, Vec::new()))
            .1
            .push(format!("{kind} {value}"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "dry run: nothing was sent")?;
    for m in &missing {
        writeln!(out, "no customer with {m} in tenant {}", args.tenant)?;
    }
    if found.is_empty() {
        return Err(Failed(
            2,
            format!(
                "no customer of tenant {} has the identity given: nothing to erase",
                args.tenant
            ),
        )
        .into());
    }
    for (id, (doc, by)) in &found {
        writeln!(out, "{}", report(id, doc, by))?;
    }
    writeln!(
        out,
        "What stays: order, payment, refund and parcel ids, line items, money and \
         revenue figures, statuses, reason codes, times, UTM source/medium/campaign, \
         counts, and the hashed identity keys; the customer is republished with \
         redacted: true."
    )?;
    Ok(())
}

/// What erasing customer `id` (its Customer 360 `doc`, found by `by`) removes.
/// Identity values are never shown, only their kinds.
fn report(id: &str, doc: &Value, by: &[String]) -> String {
    let list = |field: &str| doc[field].as_array().cloned().unwrap_or_default();
    let omitted = |field: &str| doc["omitted"][field].as_u64().unwrap_or(0);
    let mut lines = vec![format!("customer {id} (found by {})", by.join(" and "))];
    if doc["redacted"].as_bool() == Some(true) {
        lines.push("  already erased: the erasure would change nothing".into());
    }
    if let Some(from) = doc["resolved_from"].as_str() {
        lines.push(format!(
            "  (the identity belonged to {from}, merged into it)"
        ));
    }
    let orders = list("orders");
    let order_ids: Vec<&str> = orders
        .iter()
        .filter_map(|o| o["order_id"].as_str())
        .collect();
    let count = doc["orders_count"]
        .as_u64()
        .unwrap_or(order_ids.len() as u64);
    let more = match omitted("orders") {
        0 => String::new(),
        n => format!(", and {n} older not listed"),
    };
    lines.push(if order_ids.is_empty() {
        format!("  orders: {count}")
    } else {
        format!("  orders: {count} ({}{more})", order_ids.join(", "))
    });
    let tickets = list("tickets").len() as u64 + omitted("tickets");
    lines.push(format!("  tickets: {tickets}"));
    lines.push(format!(
        "  touches: {}",
        doc["touches"].as_u64().unwrap_or(0)
    ));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let identities = list("identities");
    for i in &identities {
        *kinds
            .entry(i["kind"].as_str().unwrap_or("other").to_string())
            .or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    lines.push(if kinds.is_empty() {
        "  identities: 0".into()
    } else {
        format!("  identities: {} ({})", identities.len(), kinds.join(", "))
    });
    let merged_ids: Vec<String> = list("merged")
        .iter()
        .filter_map(|m| m["merged_id"].as_str().map(str::to_string))
        .collect();
    lines.push(if merged_ids.is_empty() {
        "  merged customers: 0".into()
    } else {
        format!(
            "  merged customers: {} ({})",
            merged_ids.len(),
            merged_ids.join(", ")
        )
    });
    lines.join("\n")
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
    fn the_report_names_kinds_never_identity_values() {
        let doc = json!({
            "customer_id": "cus_em_1",
            "orders_count": 3,
            "orders": [{"order_id": "shopify:2"}, {"order_id": "shopify:1"}],
            "omitted": {"orders": 1, "tickets": 2},
            "tickets": [{"ticket_id": "9"}],
            "touches": 4,
            "identities": [
                {"kind": "email", "value": "ada@example.com"},
                {"kind": "phone", "value": "+14155550100"},
                {"kind": "shopify", "value": "8300000001"}
            ],
            "merged": [{"merged_id": "cus_ph_2", "reason": "phone"}],
            "redacted": false
        });
        let text = report("cus_em_1", &doc, &["email ada@example.com".into()]);
        assert_eq!(
            text,
            "customer cus_em_1 (found by email ada@example.com)\n  \
             orders: 3 (shopify:2, shopify:1, and 1 older not listed)\n  \
             tickets: 3\n  touches: 4\n  \
             identities: 3 (email 1, phone 1, shopify 1)\n  \
             merged customers: 1 (cus_ph_2)"
        );
        assert!(!text.contains("+14155550100") && !text.contains("8300000001"));
    }

    #[test]
    fn the_body_carries_normalised_identities() {
        let subject = Subject {
            email: normalize_email(" Ada@Example.COM "),
            phone: normalize_phone("+1 415 555 0100", None),
        };
        let body = command_body(
            "c-1",
            &subject,
            Some("asked by mail"),
            time::macros::datetime!(2025-04-02 08:15 UTC),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"command_id": "c-1", "email": "ada@example.com", "phone": "+14155550100",
                   "requested_at": "2025-04-02T08:15:00Z", "reason": "asked by mail"})
        );
    }
}
