//! Reading HubSpot's answers: which inputs an error names, why, and whose fault it is.

use super::*;

/// The input index an answer item names through its `objectWriteTraceId`.
pub(super) fn trace_of(item: &Value) -> Option<usize> {
    item.get("objectWriteTraceId")?.as_str()?.parse().ok()
}

/// Strings listed under `key` in an error's `context` (HubSpot uses
/// `{"key": ["value", ...]}`).
pub(super) fn context_values<'a>(e: &'a Value, key: &str) -> Vec<&'a str> {
    match e.pointer(&format!("/context/{key}")) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// Inputs (indices into `sent`) an error names, by trace id or by id value.
pub(super) fn named_inputs(e: &Value, sent: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for t in context_values(e, "objectWriteTraceId") {
        if let Ok(i) = t.parse::<usize>()
            && i < sent.len()
        {
            out.push(i);
        }
    }
    for key in ["ids", "id"] {
        for v in context_values(e, key) {
            if let Some(i) = sent.iter().position(|s| s.eq_ignore_ascii_case(v)) {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `(code, reason)` of a HubSpot error: the most specific code (`errors[].code`,
/// the error's own `code`, the `error` of an embedded validation result, else
/// the category), lower case, and HubSpot's own messages, each prefixed with
/// the property it is about when HubSpot names one.
pub(super) fn describe(e: &Value) -> (String, String) {
    let about = |item: &Value, message: &str| -> String {
        let property = context_values(item, "propertyName")
            .first()
            .map(|p| p.to_string())
            .or_else(|| item.get("in").and_then(Value::as_str).map(str::to_string));
        match property {
            Some(p) if !message.starts_with(&p) => format!("{p}: {message}"),
            _ => message.to_string(),
        }
    };
    let mut codes = Vec::new();
    let mut messages = Vec::new();
    for sub in e
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = sub.get("code").and_then(Value::as_str) {
            codes.push(c.to_string());
        }
        if let Some(m) = sub.get("message").and_then(Value::as_str) {
            messages.push(about(sub, m));
        }
    }
    if let Some(c) = e.get("code").and_then(Value::as_str) {
        codes.push(c.to_string());
    }
    let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
    // "Property values were not valid: [{\"isValid\":false,\"message\":...,\"error\":\"INVALID_OPTION\",\"name\":\"x\"}]"
    if messages.is_empty()
        && let Some((_, tail)) = message.split_once(": [")
        && let Ok(Value::Array(results)) = serde_json::from_str::<Value>(&format!("[{tail}"))
    {
        for r in &results {
            if let Some(c) = r.get("error").and_then(Value::as_str) {
                codes.push(c.to_string());
            }
            match (
                r.get("name").and_then(Value::as_str),
                r.get("message").and_then(Value::as_str),
            ) {
                (Some(n), Some(m)) => messages.push(format!("{n}: {m}")),
                (None, Some(m)) => messages.push(m.to_string()),
                _ => {}
            }
        }
    }
    if messages.is_empty() && !message.is_empty() {
        messages.push(about(e, message));
    }
    let code = codes
        .first()
        .cloned()
        .or_else(|| {
            e.get("category")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "hubspot_rejected".into())
        .to_lowercase();
    let reason = if messages.is_empty() {
        client::excerpt(&e.to_string())
    } else {
        messages.join("; ")
    };
    (code, reason)
}

/// Whether a refusal is about the configuration rather than a record: a
/// property that does not exist, an id property that is not unique, a scope.
pub(super) fn blames_configuration(body: &Value) -> bool {
    let text = body.to_string().to_ascii_uppercase();
    text.contains("PROPERTY_DOESNT_EXIST")
        || text.contains("DOES NOT EXIST")
        || text.contains("NON-UNIQUE")
        || text.contains("MISSING_SCOPES")
}

pub(super) fn halves<T>(ids: Vec<T>) -> Vec<Vec<T>> {
    let mut a = ids;
    let b = a.split_off(a.len() / 2);
    vec![a, b]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_hubspots_error_bodies() {
        // A single-object 400 as HubSpot sends it (validation results embedded
        // in the message).
        let body = json!({
            "status": "error",
            "message": "Property values were not valid: [{\"isValid\":false,\"message\":\"reports was not one of the allowed options: [PRODUCT_ISSUE, BILLING_ISSUE]\",\"error\":\"INVALID_OPTION\",\"name\":\"hs_ticket_category\"}]",
            "correlationId": "c0",
            "category": "VALIDATION_ERROR"
        });
        let (code, reason) = describe(&body);
        assert_eq!(code, "invalid_option");
        assert_eq!(
            reason,
            "hs_ticket_category: reports was not one of the allowed options: [PRODUCT_ISSUE, BILLING_ISSUE]"
        );
        assert!(!blames_configuration(&body));
        // A multi-status error item.
        let item = json!({
            "status": "error",
            "category": "VALIDATION_ERROR",
            "message": "Property values were not valid",
            "context": {"objectWriteTraceId": ["1"]},
            "errors": [{"message": "Email address x is invalid", "code": "INVALID_EMAIL", "context": {"propertyName": ["email"]}}]
        });
        assert_eq!(
            describe(&item),
            (
                "invalid_email".into(),
                "email: Email address x is invalid".into()
            )
        );
        let sent = vec!["a@x.io".to_string(), "x".to_string()];
        assert_eq!(named_inputs(&item, &sent), vec![1]);
        assert_eq!(
            named_inputs(&json!({"context": {"ids": ["A@X.IO"]}}), &sent),
            vec![0]
        );
        // Configuration, not data.
        assert!(blames_configuration(&json!({
            "message": "Property values were not valid",
            "errors": [{"code": "PROPERTY_DOESNT_EXIST", "message": "Property \"x\" does not exist"}]
        })));
        assert!(blames_configuration(&json!({
            "message": "Unable to perform update/upsert by non-unique 0-1 property"
        })));
        assert_eq!(describe(&json!({})).0, "hubspot_rejected");
    }
}
