//! `storefold identity merge|split|block`: an operator's decision about two
//! identities, as a signed operator command (`identity/merge`,
//! `identity/split`, `identity/block` of the `operator` provider) posted to the
//! ingest like any webhook, so that it is kept in `raw.operator` and folded in
//! order; or, with `--dry-run`, what the query API shows of the two now and
//! what the decision would change.

use std::io::Write;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use storefold_core::event::{IdentityDecision, Party};
use storefold_core::identity::{ExternalId, normalize_email, normalize_phone};
use storefold_core::{CustomerId, IdentityKey};
use storefold_providers::operator::{decision_topic, separable};
use storefold_runtime::config::Config;
use time::OffsetDateTime;

use crate::Failed;
use crate::operator_command::{QueryApi, QueryArgs, SendArgs, command_body, send};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum IdentityCommand {
    /// The two identities are one customer: their customers become one,
    /// whatever the merge rules say (`identity/merge`).
    Merge(DecisionArgs),
    /// Undo a merge: the two identities are two customers from now on, and no
    /// later evidence joins them again by the rules (`identity/split`). One
    /// side at least must be an email or a cus_em_ customer id.
    Split(DecisionArgs),
    /// Do not merge: the two identities are kept apart, as a precaution, and
    /// no later evidence joins them by the rules (`identity/block`). One side
    /// at least must be an email or a cus_em_ customer id.
    Block(DecisionArgs),
}

impl IdentityCommand {
    fn parts(self) -> (IdentityDecision, DecisionArgs) {
        match self {
            IdentityCommand::Merge(a) => (IdentityDecision::Merge, a),
            IdentityCommand::Split(a) => (IdentityDecision::Split, a),
            IdentityCommand::Block(a) => (IdentityDecision::Block, a),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DecisionArgs {
    /// The tenant the identities belong to.
    #[arg(long)]
    tenant: String,
    /// One side: email:ADDRESS, phone:NUMBER (international form, e.g.
    /// phone:+14155550123), external:SOURCE:ID (e.g. external:shopify:42), or
    /// a customer id (cus_… or customer:cus_…).
    #[arg(long, value_name = "SIDE")]
    a: String,
    /// The other side, in the same forms as --a.
    #[arg(long, value_name = "SIDE")]
    b: String,
    /// Why, for the audit trail (kept with the command in raw.operator).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The command's id; the same id sent again is the same decision (for a
    /// retry after a timeout). Default: a new random UUID.
    #[arg(long, value_name = "ID")]
    command_id: Option<String>,
    #[command(flatten)]
    send: SendArgs,
    /// Send nothing: show from the query API the customer each side belongs
    /// to now and what the decision would change.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    query: QueryArgs,
}

/// What `--<option>` names: one identity, normalised as the mappers
/// normalise it (as the `operator` provider checks it again).
fn parse_side(option: &str, raw: &str) -> Result<Party> {
    let raw = raw.trim();
    let forms = "give email:ADDRESS, phone:NUMBER, external:SOURCE:ID or a customer id (cus_…)";
    let Some((kind, value)) = raw.split_once(':') else {
        if raw.starts_with("cus_") {
            return customer(option, raw);
        }
        bail!("--{option} names no identity: {forms}");
    };
    match kind.trim() {
        "email" => normalize_email(value)
            .map(Party::Email)
            .ok_or_else(|| anyhow::anyhow!("--{option} is not a valid email address")),
        "phone" => normalize_phone(value, None)
            .map(Party::Phone)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--{option} is not a valid phone number in international form \
                 (phone:+<country code><number>)"
                )
            }),
        "external" => {
            let (source, id) = value.split_once(':').unwrap_or((value, ""));
            let (source, id) = (source.trim(), id.trim());
            if source.is_empty()
                || source.chars().any(|c| c.is_control() || c.is_whitespace())
                || id.is_empty()
                || id == "0"
            {
                bail!(
                    "--{option} is not an external id: give external:SOURCE:ID \
                     (e.g. external:shopify:42)"
                );
            }
            Ok(Party::External(ExternalId {
                source: source.to_ascii_lowercase(),
                id: id.to_string(),
            }))
        }
        "customer" => customer(option, value.trim()),
        _ => bail!("--{option} names no identity: {forms}"),
    }
}

fn customer(option: &str, id: &str) -> Result<Party> {
    let id = CustomerId(id.to_string());
    if IdentityKey::from_customer_id(&id).is_none() {
        bail!("--{option} is not a storefold customer id (cus_<kind>_<hex>)");
    }
    Ok(Party::CustomerId(id.0))
}

/// The two sides, each normalised, checked together as the ingest checks them.
fn sides(decision: IdentityDecision, a: &str, b: &str) -> Result<(Party, Party)> {
    let a = parse_side("a", a)?;
    let b = parse_side("b", b)?;
    if a == b {
        bail!("--a and --b name the same identity");
    }
    if decision.separates() && !separable(&a, &b) {
        bail!(
            "identity {} needs an email or a cus_em_ customer id on --a or --b \
             (only a merge may join any two identities)",
            decision.as_str()
        );
    }
    Ok((a, b))
}

/// A side as the command's body gives it.
fn side_json(p: &Party) -> Value {
    match p {
        Party::Email(e) => json!({"email": e}),
        Party::Phone(p) => json!({"phone": p}),
        Party::External(x) => json!({"external": {"source": x.source, "id": x.id}}),
        Party::CustomerId(c) => json!({"customer_id": c}),
        Party::Erased => json!({}),
    }
}

/// A side as the operator typed it (normalised), for the dry run.
fn side_text(p: &Party) -> String {
    match p {
        Party::Email(e) => format!("email {e}"),
        Party::Phone(p) => format!("phone {p}"),
        Party::External(x) => format!("external {}:{}", x.source, x.id),
        Party::CustomerId(c) => format!("customer {c}"),
        Party::Erased => "erased".into(),
    }
}

pub(crate) async fn run(config: Option<&Config>, command: IdentityCommand) -> Result<()> {
    let (decision, args) = command.parts();
    let (a, b) = sides(decision, &args.a, &args.b)?;
    if args.dry_run {
        return dry_run(config, decision, &args, &a, &b).await;
    }
    send(
        config,
        &args.tenant,
        &args.send,
        decision_topic(decision),
        args.command_id.as_deref(),
        |command_id, now| decision_body(command_id, &a, &b, args.reason.as_deref(), now),
    )
    .await
}

/// The `identity/merge|split|block` body.
fn decision_body(
    command_id: &str,
    a: &Party,
    b: &Party,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<u8>> {
    command_body(
        command_id,
        now,
        reason,
        json!({"a": side_json(a), "b": side_json(b)}),
    )
}

/// Where a side stands now, as far as the query API tells.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Standing {
    /// Its customer: the id, and what the query API shows of it.
    Customer(String, Value),
    /// No customer has it.
    NoCustomer,
    /// The query API cannot look it up (an external id).
    Unknown,
}

/// What the two sides are now.
#[derive(Debug, PartialEq, Eq)]
enum Together {
    One(String),
    Two(String, String),
    /// Apart, with the reason (a side has no customer, or an external id is
    /// not among the other side's customer's identities).
    Apart(String),
    Unknown,
}

async fn standing(api: &QueryApi, side: &Party) -> Result<Standing> {
    let doc = match side {
        Party::Email(e) => api.find("email", e).await?,
        Party::Phone(p) => api.find("phone", p).await?,
        Party::CustomerId(c) => api.customer(c).await?,
        Party::External(_) | Party::Erased => return Ok(Standing::Unknown),
    };
    Ok(match doc {
        Some(doc) => Standing::Customer(
            doc["customer_id"].as_str().unwrap_or_default().to_string(),
            doc,
        ),
        None => Standing::NoCustomer,
    })
}

/// Whether the customer `doc` lists the external id `x` among its identities.
fn lists(doc: &Value, x: &ExternalId) -> bool {
    doc["identities"].as_array().is_some_and(|ids| {
        ids.iter()
            .any(|i| i["kind"] == x.source.as_str() && i["value"] == x.id.as_str())
    })
}

/// An external side's customer, when the other side's customer lists it.
fn settle_external(side: &Party, st: Standing, other: &Standing) -> Standing {
    match (side, &st, other) {
        (Party::External(x), Standing::Unknown, Standing::Customer(id, doc)) if lists(doc, x) => {
            Standing::Customer(id.clone(), doc.clone())
        }
        _ => st,
    }
}

fn together(a: &Party, sa: &Standing, b: &Party, sb: &Standing) -> Together {
    match (sa, sb) {
        (Standing::Customer(x, _), Standing::Customer(y, _)) if x == y => Together::One(x.clone()),
        (Standing::Customer(x, _), Standing::Customer(y, _)) => Together::Two(x.clone(), y.clone()),
        (Standing::NoCustomer, _) => Together::Apart("a has no customer".into()),
        (_, Standing::NoCustomer) => Together::Apart("b has no customer".into()),
        (Standing::Unknown, Standing::Customer(id, _)) if matches!(a, Party::External(_)) => {
            Together::Apart(format!("a is not among the identities of {id}"))
        }
        (Standing::Customer(id, _), Standing::Unknown) if matches!(b, Party::External(_)) => {
            Together::Apart(format!("b is not among the identities of {id}"))
        }
        _ => Together::Unknown,
    }
}

/// One line per side, whether they are one customer, and what `decision`
/// would do. Identity values appear only as the operator gave them.
fn report(
    decision: IdentityDecision,
    (a, sa): (&Party, &Standing),
    (b, sb): (&Party, &Standing),
) -> Vec<String> {
    let line = |name: &str, p: &Party, st: &Standing| {
        let now = match st {
            Standing::Customer(id, _) => {
                let mut s = format!("customer {id}");
                match p {
                    Party::CustomerId(c) if c != id => {
                        s.push_str(&format!(" ({c} was merged into it)"));
                    }
                    Party::External(_) => s.push_str(" (listed among its identities)"),
                    _ => {}
                }
                s
            }
            Standing::NoCustomer => "no customer".into(),
            Standing::Unknown => {
                "not known: the query API finds customers by email, phone or customer id only"
                    .into()
            }
        };
        format!("{name} ({}): {now}", side_text(p))
    };
    let mut lines = vec![line("a", a, sa), line("b", b, sb)];
    let now = together(a, sa, b, sb);
    lines.push(match &now {
        Together::One(id) => format!("one customer now: yes ({id})"),
        Together::Two(..) => "one customer now: no (two customers)".into(),
        Together::Apart(why) => format!("one customer now: no ({why})"),
        Together::Unknown => "one customer now: cannot tell".into(),
    });
    let name = decision.as_str();
    let rules = "later evidence will not join them again by the merge rules";
    lines.push(match (decision, &now) {
        (IdentityDecision::Merge, Together::One(_)) => {
            format!("{name}: they are already one customer; the decision keeps them together")
        }
        (IdentityDecision::Merge, Together::Two(x, y)) => {
            format!("{name}: {x} and {y} would become one customer")
        }
        (IdentityDecision::Merge, Together::Apart(_)) => {
            format!("{name}: they would become one customer")
        }
        (IdentityDecision::Merge, Together::Unknown) => {
            format!("{name}: they would be one customer (if they are not already)")
        }
        (_, Together::One(id)) => {
            format!("{name}: {id} would be separated into two customers; {rules}")
        }
        (_, Together::Two(..) | Together::Apart(_)) => {
            format!("{name}: they are already apart and would stay apart; {rules}")
        }
        (_, Together::Unknown) => {
            format!("{name}: they would be kept apart (separated if they are one now); {rules}")
        }
    });
    lines
}

/// The identity keys of the two sides, derived as the fold derives them (the
/// tenant's identity secret and email alias policy from the configuration).
fn pair_keys(
    config: Option<&Config>,
    tenant: &str,
    a: &Party,
    b: &Party,
) -> Option<(String, String)> {
    let fold = config?.fold_config().ok()?;
    let rules = fold.identity_rules(tenant);
    let key = |p: &Party| {
        let p = match p {
            Party::Email(e) => Party::Email(rules.canonical_email(e).unwrap_or_else(|| e.clone())),
            other => other.clone(),
        };
        p.key(fold.key_scope(tenant)).map(|k| k.to_string())
    };
    Some((key(a)?, key(b)?))
}

/// What the fold has recorded for the pair now, from either side's customer's
/// `identity_decisions`.
fn recorded(keys: Option<&(String, String)>, sides: [&Standing; 2]) -> String {
    let Some((ka, kb)) = keys else {
        return "decision recorded for the pair: cannot tell without the configuration \
                (the tenant's identity secret derives the keys)"
            .into();
    };
    let found = sides.iter().find_map(|st| match st {
        Standing::Customer(_, doc) => doc["identity_decisions"]
            .as_array()?
            .iter()
            .find(|d| {
                let (k, o) = (d["key"].as_str(), d["other"].as_str());
                (k, o) == (Some(ka), Some(kb)) || (k, o) == (Some(kb), Some(ka))
            })
            .cloned(),
        _ => None,
    });
    match found {
        Some(d) => format!(
            "decision recorded for the pair: {} at {} ({}); a later one replaces it",
            d["decision"].as_str().unwrap_or("?"),
            d["at"].as_str().unwrap_or("?"),
            d["event_id"].as_str().unwrap_or("?"),
        ),
        None => "decision recorded for the pair: none".into(),
    }
}

async fn dry_run(
    config: Option<&Config>,
    decision: IdentityDecision,
    args: &DecisionArgs,
    a: &Party,
    b: &Party,
) -> Result<()> {
    let api = QueryApi::new(config, &args.query, &args.tenant)?;
    let (sa, sb) = (standing(&api, a).await?, standing(&api, b).await?);
    let sa = settle_external(a, sa, &sb);
    let sb = settle_external(b, sb, &sa);
    let mut out = std::io::stdout().lock();
    writeln!(out, "dry run: nothing was sent")?;
    for l in report(decision, (a, &sa), (b, &sb)) {
        writeln!(out, "{l}")?;
    }
    let keys = pair_keys(config, &args.tenant, a, b);
    writeln!(out, "{}", recorded(keys.as_ref(), [&sa, &sb]))?;
    if sa == Standing::NoCustomer && sb == Standing::NoCustomer {
        return Err(Failed(
            2,
            format!(
                "no customer of tenant {} has either side: the {} would change no customer now",
                args.tenant,
                decision.as_str()
            ),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_read_and_normalised() {
        let p = |s: &str| parse_side("a", s).unwrap();
        assert_eq!(
            p("email: Ada@Example.COM"),
            Party::Email("ada@example.com".into())
        );
        assert_eq!(
            p("phone:+1 415 555 0100"),
            Party::Phone("+14155550100".into())
        );
        assert_eq!(
            p("external:Shopify:8300000001"),
            Party::External(ExternalId {
                source: "shopify".into(),
                id: "8300000001".into()
            })
        );
        assert_eq!(
            p("external:collect:a:b"),
            Party::External(ExternalId {
                source: "collect".into(),
                id: "a:b".into()
            })
        );
        let cus = "cus_em_8b1f4c2a9d0e7f3a5c6b2e19";
        assert_eq!(p(cus), Party::CustomerId(cus.into()));
        assert_eq!(p(&format!("customer:{cus}")), Party::CustomerId(cus.into()));
        let err = |s: &str| parse_side("b", s).unwrap_err().to_string();
        assert_eq!(err("email:nope"), "--b is not a valid email address");
        assert!(err("phone:030 1234567").starts_with("--b is not a valid phone number"));
        assert!(err("external:shopify").starts_with("--b is not an external id"));
        assert!(err("external:shopify:0").starts_with("--b is not an external id"));
        assert!(err("customer:cus_zz_1").starts_with("--b is not a storefold customer id"));
        assert!(err("cus_em_xyz").starts_with("--b is not a storefold customer id"));
        assert!(err("ada@example.com").starts_with("--b names no identity"));
        assert!(err("mail:ada@example.com").starts_with("--b names no identity"));
    }

    #[test]
    fn the_sides_are_checked_together() {
        let m = IdentityDecision::Merge;
        let s = IdentityDecision::Split;
        let same = sides(m, "email:a@example.com", "email: A@example.com ");
        assert_eq!(
            same.unwrap_err().to_string(),
            "--a and --b name the same identity"
        );
        let no_email = ("phone:+14155550100", "external:shopify:42");
        assert!(sides(m, no_email.0, no_email.1).is_ok());
        assert_eq!(
            sides(s, no_email.0, no_email.1).unwrap_err().to_string(),
            "identity split needs an email or a cus_em_ customer id on --a or --b \
             (only a merge may join any two identities)"
        );
        assert!(
            sides(
                IdentityDecision::Block,
                "phone:+14155550100",
                "cus_em_8b1f4c2a9d0e7f3a5c6b2e19"
            )
            .is_ok()
        );
    }

    #[test]
    fn the_body_carries_the_normalised_sides() {
        let (a, b) = sides(
            IdentityDecision::Merge,
            "email: Ada@Example.COM",
            "external:shopify:42",
        )
        .unwrap();
        let body = decision_body(
            "c-1",
            &a,
            &b,
            Some("same person, says support"),
            time::macros::datetime!(2025-05-12 12:00 UTC),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"command_id": "c-1", "a": {"email": "ada@example.com"},
                   "b": {"external": {"source": "shopify", "id": "42"}},
                   "requested_at": "2025-05-12T12:00:00Z",
                   "reason": "same person, says support"})
        );
    }

    #[test]
    fn the_dry_run_names_the_decision_recorded_for_the_pair() {
        let keys = ("em_1".to_string(), "ph_2".to_string());
        let doc = json!({"customer_id": "cus_em_1", "identity_decisions": [
            {"key": "em_9", "other": "em_1", "decision": "merge", "at": "2026-01-01T00:00:00Z",
             "event_id": "operator:identity/merge:x"},
            {"key": "ph_2", "other": "em_1", "decision": "block", "at": "2026-02-01T00:00:00Z",
             "event_id": "operator:identity/block:y"}]});
        let one = Standing::Customer("cus_em_1".into(), doc);
        assert_eq!(
            recorded(Some(&keys), [&Standing::NoCustomer, &one]),
            "decision recorded for the pair: block at 2026-02-01T00:00:00Z \
             (operator:identity/block:y); a later one replaces it"
        );
        let other = ("em_1".to_string(), "ph_3".to_string());
        assert_eq!(
            recorded(Some(&other), [&one, &one]),
            "decision recorded for the pair: none"
        );
        assert!(recorded(None, [&one, &one]).contains("cannot tell"));
    }

    #[test]
    fn the_report_says_where_each_side_stands_and_what_would_change() {
        let email = Party::Email("ada@example.com".into());
        let phone = Party::Phone("+14155550100".into());
        let ext = Party::External(ExternalId {
            source: "shopify".into(),
            id: "42".into(),
        });
        let doc = |id: &str| {
            json!({"customer_id": id, "email": "secret@example.com",
                   "identities": [{"kind": "email", "value": "secret@example.com"},
                                  {"kind": "shopify", "value": "42"}]})
        };
        let one = Standing::Customer("cus_em_1".into(), doc("cus_em_1"));
        let other = Standing::Customer("cus_ph_2".into(), doc("cus_ph_2"));
        let text = |d, a: (&Party, &Standing), b: (&Party, &Standing)| report(d, a, b).join("\n");

        let t = text(IdentityDecision::Merge, (&email, &one), (&phone, &other));
        assert_eq!(
            t,
            "a (email ada@example.com): customer cus_em_1\n\
             b (phone +14155550100): customer cus_ph_2\n\
             one customer now: no (two customers)\n\
             merge: cus_em_1 and cus_ph_2 would become one customer"
        );
        let t = text(IdentityDecision::Split, (&email, &one), (&phone, &one));
        assert!(t.contains("one customer now: yes (cus_em_1)"), "{t}");
        assert!(
            t.ends_with(
                "split: cus_em_1 would be separated into two customers; \
                 later evidence will not join them again by the merge rules"
            ),
            "{t}"
        );
        let t = text(
            IdentityDecision::Block,
            (&email, &one),
            (&phone, &Standing::NoCustomer),
        );
        assert!(t.contains("b (phone +14155550100): no customer"), "{t}");
        assert!(
            t.contains("one customer now: no (b has no customer)"),
            "{t}"
        );
        assert!(
            t.contains("block: they are already apart and would stay apart"),
            "{t}"
        );
        let t = text(IdentityDecision::Merge, (&email, &one), (&phone, &one));
        assert!(
            t.ends_with("merge: they are already one customer; the decision keeps them together"),
            "{t}"
        );
        // An external id is found among the other side's identities, or not.
        let found = settle_external(&ext, Standing::Unknown, &one);
        assert_eq!(found, one);
        let t = text(IdentityDecision::Merge, (&ext, &found), (&email, &one));
        assert!(
            t.starts_with(
                "a (external shopify:42): customer cus_em_1 (listed among its identities)"
            ),
            "{t}"
        );
        let other_ext = Party::External(ExternalId {
            source: "shopify".into(),
            id: "43".into(),
        });
        let unknown = settle_external(&other_ext, Standing::Unknown, &one);
        assert_eq!(unknown, Standing::Unknown);
        let t = text(
            IdentityDecision::Merge,
            (&other_ext, &unknown),
            (&email, &one),
        );
        assert!(t.contains("a (external shopify:43): not known"), "{t}");
        assert!(
            t.contains("one customer now: no (a is not among the identities of cus_em_1)"),
            "{t}"
        );
        let t = text(
            IdentityDecision::Merge,
            (&other_ext, &unknown),
            (&ext, &Standing::Unknown),
        );
        assert!(t.contains("one customer now: cannot tell"), "{t}");
        // A customer id merged into another.
        let cus = Party::CustomerId("cus_em_9".into());
        let mut merged = doc("cus_em_1");
        merged["resolved_from"] = json!("cus_em_9");
        let t = text(
            IdentityDecision::Merge,
            (&cus, &Standing::Customer("cus_em_1".into(), merged)),
            (&email, &one),
        );
        assert!(
            t.starts_with("a (customer cus_em_9): customer cus_em_1 (cus_em_9 was merged into it)"),
            "{t}"
        );
        // Never what the customer documents hold.
        for d in [IdentityDecision::Merge, IdentityDecision::Split] {
            let t = text(d, (&email, &one), (&phone, &other));
            assert!(!t.contains("secret"), "{t}");
        }
    }
}
