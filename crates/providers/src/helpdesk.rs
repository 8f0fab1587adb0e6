//! What Zendesk and Gorgias tickets share: reading tags into reason codes, finding
//! the order a ticket is about, statuses, CSAT, timestamps, and the ReturnRequested
//! a ticket implies.

use storefold_core::event::{Csat, OrderLink, ReasonCode, Return, Ticket, TicketStatus};
use storefold_core::{Envelope, Event};
use time::OffsetDateTime;

use crate::{MapContext, MapError, hash_number, lenient_time, order_number_in_text};

/// A ticket timestamp in any form [`lenient_time`] reads; blank or absent is
/// `None`, anything unreadable an [`MapError::InvalidField`] naming `field`.
pub(crate) fn time_of(field: &str, raw: Option<&str>) -> Result<Option<OffsetDateTime>, MapError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => lenient_time(s)
            .map(Some)
            .ok_or_else(|| MapError::InvalidField {
                field: field.to_string(),
                reason: format!("not a timestamp: {s:?}"),
            }),
    }
}

/// Tags as helpdesks send them: a list of strings, a list of `{"name": …}` objects,
/// or (from a template placeholder such as `{{ticket.tags}}`) one string separated by
/// spaces or commas. Lower-cased, trimmed, de-duplicated, in order.
pub(crate) fn tags_of(value: Option<&serde_json::Value>) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    match value {
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                match item {
                    serde_json::Value::String(s) => raw.push(s.clone()),
                    serde_json::Value::Object(o) => {
                        if let Some(serde_json::Value::String(s)) = o.get("name") {
                            raw.push(s.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(serde_json::Value::String(s)) => {
            raw.extend(s.split([' ', ',']).map(str::to_string));
        }
        _ => {}
    }
    let mut tags: Vec<String> = Vec::new();
    for t in raw {
        let t = t.trim().to_lowercase();
        if !t.is_empty() && !tags.contains(&t) {
            tags.push(t);
        }
    }
    tags
}

fn tokens(tag: &str) -> impl Iterator<Item = &str> {
    tag.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

fn tag_has(tag: &str, words: &[&str]) -> bool {
    words.contains(&tag) || tokens(tag).any(|t| words.contains(&t))
}

/// A tag marking a return or refund request (`return`, `returns`, `refund`,
/// `return_request`, `refund-requested`, ...).
pub(crate) fn is_return_tag(tag: &str) -> bool {
    tag_has(tag, &["return", "returns", "refund", "refunds"])
}

/// Reason codes the tags name, sorted and de-duplicated:
/// size/sizing/fit -> Size, defect/defective/damaged/broken -> Defect,
/// late/delay/delayed/where_is_my_order/wismo -> Late, cancel/cancellation/
/// cancelled -> Cancel. When none of those is present but a return or refund tag
/// is, the reason is Other.
pub(crate) fn reasons_of(tags: &[String]) -> Vec<ReasonCode> {
    let mut reasons = Vec::new();
    for tag in tags {
        let tag = tag.as_str();
        if tag_has(tag, &["size", "sizing", "fit"]) {
            reasons.push(ReasonCode::Size);
        }
        if tag_has(tag, &["defect", "defective", "damaged", "broken"]) {
            reasons.push(ReasonCode::Defect);
        }
        if tag == "where_is_my_order" || tag_has(tag, &["late", "delay", "delayed", "wismo"]) {
            reasons.push(ReasonCode::Late);
        }
        if tag_has(tag, &["cancel", "cancellation", "cancelled", "canceled"]) {
            reasons.push(ReasonCode::Cancel);
        }
    }
    if reasons.is_empty() && tags.iter().any(|t| is_return_tag(t)) {
        reasons.push(ReasonCode::Other);
    }
    reasons.sort();
    reasons.dedup();
    reasons
}

/// An order number in a tag: `order_1001`, `order-1001`, `order1001`, `order#1001`.
fn order_number_in_tag(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("order")?;
    let rest = rest.trim_start_matches(['_', '-', '#', ':']);
    (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())).then(|| format!("#{rest}"))
}

/// Order links a ticket names, first found first: explicit order numbers (a
/// template's `order_number`, a custom field value), order tags, then the subject
/// (`#1001`, `Order 1001`).
pub(crate) fn order_links(
    explicit: &[String],
    tags: &[String],
    subject: Option<&str>,
) -> Vec<OrderLink> {
    let mut numbers: Vec<String> = Vec::new();
    numbers.extend(explicit.iter().filter_map(|n| hash_number(n)));
    numbers.extend(tags.iter().filter_map(|t| order_number_in_tag(t)));
    numbers.extend(subject.and_then(order_number_in_text));
    let mut links = Vec::new();
    for number in numbers {
        let link = OrderLink::Number { number };
        if !links.contains(&link) {
            links.push(link);
        }
    }
    links
}

/// A custom field value that is plainly an order number (`#1001`).
pub(crate) fn looks_like_order_number(value: &str) -> bool {
    let v = value.trim();
    v.len() > 1 && v.starts_with('#') && v[1..].chars().all(|c| c.is_ascii_digit())
}

/// Zendesk and Gorgias statuses, any case: new, open, pending, hold/on-hold,
/// solved, closed.
pub(crate) fn status_of(raw: &str) -> Option<TicketStatus> {
    let s = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    let status = match s.as_str() {
        "new" => TicketStatus::New,
        "open" => TicketStatus::Open,
        "pending" => TicketStatus::Pending,
        "hold" | "on_hold" | "onhold" => TicketStatus::OnHold,
        "solved" => TicketStatus::Solved,
        "closed" => TicketStatus::Closed,
        _ => return None,
    };
    Some(status)
}

/// CSAT from `good`/`bad` (5/1) or a 1..=5 score; `offered`, `unoffered` and
/// anything else are no rating.
pub(crate) fn csat_of(value: Option<&serde_json::Value>) -> Option<Csat> {
    let score = match value? {
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "good" => 5,
            "bad" => 1,
            other => other.parse::<u8>().ok()?,
        },
        serde_json::Value::Number(n) => u8::try_from(n.as_u64()?).ok()?,
        serde_json::Value::Object(o) => return csat_of(o.get("score")),
        _ => return None,
    };
    (1..=5).contains(&score).then_some(Csat { score })
}

/// The TicketUpdated envelope, plus a ReturnRequested (`<provider>:<ticket id>`)
/// when the ticket names an order and carries a return or refund tag. The return's
/// reason is the first of Size, Defect, Late the tags name, else Other.
pub(crate) fn envelopes(ctx: &MapContext<'_>, event_id: &str, ticket: Ticket) -> Vec<Envelope> {
    let mut out = Vec::new();
    let wants_return =
        !ticket.order_links.is_empty() && ticket.tags.iter().any(|t| is_return_tag(t));
    if wants_return {
        let reason = ticket
            .reasons
            .iter()
            .copied()
            .find(|r| matches!(r, ReasonCode::Size | ReasonCode::Defect | ReasonCode::Late))
            .unwrap_or(ReasonCode::Other);
        let ret = Return {
            provider: ticket.provider.clone(),
            return_id: format!("{}:{}", ticket.provider, ticket.ticket_id),
            links: ticket.order_links.clone(),
            reason,
            resolution: None,
            line_item_ids: Vec::new(),
            note: ticket.subject.clone(),
            at: ticket.created_at,
        };
        out.push(Envelope {
            tenant: ctx.tenant.to_string(),
            provider: ticket.provider.clone(),
            event_id: format!("{event_id}#return"),
            occurred_at: ticket.created_at,
            event: Event::ReturnRequested(ret),
        });
    }
    out.insert(
        0,
        Envelope {
            tenant: ctx.tenant.to_string(),
            provider: ticket.provider.clone(),
            event_id: event_id.to_string(),
            occurred_at: ticket.updated_at,
            event: Event::TicketUpdated(ticket),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: serde_json::Value) -> Vec<String> {
        tags_of(Some(&v))
    }

    #[test]
    fn tag_shapes() {
        let want = vec!["size".to_string(), "return".to_string()];
        assert_eq!(tags(serde_json::json!(["Size", " return ", "size"])), want);
        assert_eq!(
            tags(serde_json::json!([{"name": "SIZE"}, {"name": "return"}, 3])),
            want
        );
        assert_eq!(tags(serde_json::json!("size return")), want);
        assert_eq!(tags(serde_json::json!("size, return")), want);
        assert!(tags(serde_json::json!(null)).is_empty());
    }

    #[test]
    fn reasons() {
        let r = |ts: &[&str]| reasons_of(&ts.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(r(&["wrong_size", "return"]), vec![ReasonCode::Size]);
        assert_eq!(r(&["fit"]), vec![ReasonCode::Size]);
        assert_eq!(r(&["outfit"]), vec![]);
        assert_eq!(
            r(&["item-damaged", "late"]),
            vec![ReasonCode::Defect, ReasonCode::Late]
        );
        assert_eq!(r(&["where_is_my_order"]), vec![ReasonCode::Late]);
        assert_eq!(
            r(&["wismo", "cancellation"]),
            vec![ReasonCode::Late, ReasonCode::Cancel]
        );
        assert_eq!(r(&["refund_request"]), vec![ReasonCode::Other]);
        assert_eq!(r(&["vip"]), vec![]);
    }

    #[test]
    fn links_and_statuses() {
        let tags = vec!["order_1002".to_string(), "vip".to_string()];
        assert_eq!(
            order_links(&["1001".into()], &tags, Some("Where is order #1003?")),
            vec![
                OrderLink::Number {
                    number: "#1001".into()
                },
                OrderLink::Number {
                    number: "#1002".into()
                },
                OrderLink::Number {
                    number: "#1003".into()
                },
            ]
        );
        assert_eq!(status_of("HOLD"), Some(TicketStatus::OnHold));
        assert_eq!(status_of("Solved"), Some(TicketStatus::Solved));
        assert_eq!(status_of("archived"), None);
        assert_eq!(
            csat_of(Some(&serde_json::json!("good"))),
            Some(Csat { score: 5 })
        );
        assert_eq!(
            csat_of(Some(&serde_json::json!({"score": "bad"}))),
            Some(Csat { score: 1 })
        );
        assert_eq!(
            csat_of(Some(&serde_json::json!(4))),
            Some(Csat { score: 4 })
        );
        assert_eq!(csat_of(Some(&serde_json::json!("offered"))), None);
        assert_eq!(csat_of(Some(&serde_json::json!(9))), None);
        assert!(looks_like_order_number("#1001"));
        assert!(!looks_like_order_number("1001"));
    }
}
