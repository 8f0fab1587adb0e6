//! Routing one request to the endpoint it names, after the stand-in's checks (token, outages, rate limits).

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn answer(
    cfg: &StandInConfig,
    st: &mut State,
    now: Instant,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Value,
    raw: &[u8],
) -> Reply {
    // Availability and limits first, as HubSpot's edge answers them.
    if st.unavailable_until.is_some_and(|u| now < u) {
        return Reply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "error", "message": "Service Unavailable", "correlationId": correlation(st)}),
        );
    }
    st.arrivals.push_back(now);
    while st
        .arrivals
        .front()
        .is_some_and(|a| now.duration_since(*a) >= Duration::from_secs(10))
    {
        st.arrivals.pop_front();
    }
    let storm = st.storm_until.is_some_and(|u| now < u);
    let over = cfg
        .rate_per_10s
        .is_some_and(|limit| st.arrivals.len() > limit as usize);
    if storm || over {
        if !storm {
            st.rate_limited += 1;
        }
        let wait = if storm {
            1
        } else {
            st.arrivals
                .front()
                .map(|a| (Duration::from_secs(10) - now.duration_since(*a)).as_secs() + 1)
                .unwrap_or(1)
        };
        let mut r = Reply::new(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation(st),
                "policyName": "TEN_SECONDLY_ROLLING",
                "groupName": "publicapi:privateapp:1",
            }),
        );
        r.retry_after = Some(match (&st.storm_retry_after, storm) {
            (Some(text), true) => text.clone(),
            _ => wait.to_string(),
        });
        return r;
    }
    if method != Method::POST {
        return violation(
            st,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path}: only POST is used"),
        );
    }
    match headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if v.strip_prefix("Bearer ") == Some(cfg.token.as_str()) => {}
        Some(v) if v.starts_with("Bearer ") && v.len() > 7 => {
            st.unauthorized += 1;
            let body = error_body(
                st,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                Vec::new(),
            );
            return Reply::new(StatusCode::UNAUTHORIZED, body);
        }
        _ => {
            return violation(
                st,
                StatusCode::UNAUTHORIZED,
                format!("{path}: missing or malformed Authorization: Bearer header"),
            );
        }
    }
    let json_ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return violation(
            st,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{path}: Content-Type is not application/json"),
        );
    }
    if body.is_null() {
        return violation(
            st,
            StatusCode::BAD_REQUEST,
            format!("{path}: body is not JSON: {}", String::from_utf8_lossy(raw)),
        );
    }
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return violation(
            st,
            StatusCode::BAD_REQUEST,
            format!("{path}: no inputs array"),
        );
    };
    if inputs.is_empty() || inputs.len() > 100 {
        return violation(
            st,
            StatusCode::BAD_REQUEST,
            format!("{path}: {} inputs (1-100 allowed)", inputs.len()),
        );
    }
    match path {
        "/crm/v3/objects/contacts/batch/upsert" => upsert(cfg, st, Object::Contact, inputs),
        "/crm/v3/objects/deals/batch/upsert" => upsert(cfg, st, Object::Deal, inputs),
        "/crm/v3/objects/contacts/batch/read" => read_contacts(st, body, inputs),
        "/crm/v4/associations/deals/contacts/batch/associate/default" => associate(st, inputs),
        "/crm/v4/associations/deals/contacts/batch/archive" => archive_associations(st, inputs),
        _ => violation(
            st,
            StatusCode::NOT_FOUND,
            format!("POST {path}: no such endpoint"),
        ),
    }
}
