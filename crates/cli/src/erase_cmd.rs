//! `storefold erase`: ask for the GDPR erasure of a customer as a signed
//! operator command (`customer/erase` of the `operator` provider), posted to the
//! ingest like any webhook so that it is kept in `raw.operator` and folded in
//! order; or, with `--dry-run`, show from the query API what it would erase.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use storefold_core::identity::{normalize_email, normalize_phone};
use storefold_providers::operator::ERASE_TOPIC;
use storefold_runtime::config::Config;
use time::OffsetDateTime;

use crate::Failed;
use crate::operator_command::{QueryApi, QueryArgs, SendArgs, command_body, send};

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
    #[command(flatten)]
    send: SendArgs,
    /// Send nothing: show from the query API what the erasure would remove.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    query: QueryArgs,
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
    send(
        config,
        &args.tenant,
        &args.send,
        ERASE_TOPIC,
        args.command_id.as_deref(),
        |command_id, now| erase_body(command_id, &subject, args.reason.as_deref(), now),
    )
    .await
}

/// The `customer/erase` body.
fn erase_body(
    command_id: &str,
    subject: &Subject,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<u8>> {
    let mut fields = Map::new();
    if let Some(e) = &subject.email {
        fields.insert("email".into(), json!(e));
    }
    if let Some(p) = &subject.phone {
        fields.insert("phone".into(), json!(p));
    }
    command_body(command_id, now, reason, Value::Object(fields))
}

async fn dry_run(config: Option<&Config>, args: &EraseArgs, subject: &Subject) -> Result<()> {
    let api = QueryApi::new(config, &args.query, &args.tenant)?;
    // Customer id → (its document, the identities given that found it).
    let mut found: BTreeMap<String, (Value, Vec<String>)> = BTreeMap::new();
    let mut missing = Vec::new();
    for (kind, value) in subject.lookups() {
        let Some(doc) = api.find(kind, value).await? else {
            missing.push(format!("{kind} {value}"));
            continue;
        };
        let id = doc["customer_id"].as_str().unwrap_or_default().to_string();
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
    let shreds = config
        .and_then(|c| c.tenants.get(&args.tenant))
        .is_some_and(|t| t.raw_encryption.is_some());
    writeln!(out, "{}", raw_log_line(&args.tenant, shreds))?;
    Ok(())
}

/// What the erasure does to the raw log, by the tenant's configuration.
fn raw_log_line(tenant: &str, shreds: bool) -> String {
    if shreds {
        "Raw log: the data keys of every erased identity are destroyed; their raw \
         bodies can no longer be decrypted (a replay folds what they left without \
         personal data)."
            .to_string()
    } else {
        format!(
            "Raw log: kept as received (tenants.{tenant}.raw_encryption is not set): the \
             raw topics hold the subject's bodies until their retention removes them."
        )
    }
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
        let body = erase_body(
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
