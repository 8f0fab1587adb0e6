//! Stand-ins for the three APIs, in the test process (axum on 127.0.0.1).
//! Each checks every request against the API's documented contract (auth,
//! path and version, query parameters and their limits, page cursors used
//! as given) and answers like the API: its pagination, its rate-limit
//! headers, and a 429 with `Retry-After` on the first call. A request that
//! breaks the contract gets a 400 and is recorded in `violations`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What a stand-in saw.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// Every request: its path and query, and when it came.
    pub(crate) requests: Vec<(String, Instant)>,
    /// Contract breaches, in words.
    pub(crate) violations: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Log>>,
    items: Arc<Vec<Value>>,
}

impl Shared {
    fn record(&self, what: String) -> usize {
        let mut l = self.log.lock().unwrap();
        l.requests.push((what, Instant::now()));
        l.requests.len()
    }

    fn reject(&self, why: String) -> Response {
        self.log.lock().unwrap().violations.push(why.clone());
        (StatusCode::BAD_REQUEST, why).into_response()
    }
}

/// A running stand-in.
pub(crate) struct StandIn {
    pub(crate) base_url: String,
    pub(crate) log: Arc<Mutex<Log>>,
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn pairs(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn one<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    let mut it = q.iter().filter(|(n, _)| n == k);
    let v = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() { None } else { v }
}

fn too_many(retry_after: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", retry_after.to_string())],
        "rate limited",
    )
        .into_response()
}

// ---------------------------------------------------------------- Stripe

pub(crate) const STRIPE_KEY: &str = "sk_test_reconcile";

/// Stripe's `GET /v1/events` over `events` (any order; served newest first).
pub(crate) async fn stripe(events: Vec<Value>) -> StandIn {
    let mut events = events;
    events.sort_by_key(|e| std::cmp::Reverse(e["created"].as_i64().unwrap_or(0)));
    let shared = Shared {
        log: Arc::default(),
        items: Arc::new(events),
    };
    let log = shared.log.clone();
    let router = Router::new()
        .route("/v1/events", get(stripe_events))
        .with_state(shared);
    let addr = serve(router).await;
    StandIn {
        base_url: format!("http://{addr}"),
        log,
    }
}

async fn stripe_events(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let n = s.record(format!("/v1/events?{}", q.clone().unwrap_or_default()));
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {STRIPE_KEY}"))
    {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    if n == 1 {
        return too_many("1");
    }
    let q = pairs(&q);
    for (k, _) in &q {
        if ![
            "created[gte]",
            "created[lte]",
            "created[gt]",
            "created[lt]",
            "limit",
            "starting_after",
            "ending_before",
            "types[]",
            "type",
            "delivery_success",
        ]
        .contains(&k.as_str())
        {
            return s.reject(format!("stripe: unknown parameter {k}"));
        }
    }
    let limit: i64 = match one(&q, "limit").map(str::parse) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => return s.reject("stripe: limit must be 1..=100".into()),
    };
    let bound = |k: &str| match one(&q, k) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("stripe: {k} is not a timestamp")),
    };
    let (gte, lte) = match (bound("created[gte]"), bound("created[lte]")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return s.reject(e),
    };
    let types: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if types.len() > 20 {
        return s.reject("stripe: at most 20 types".into());
    }
    let matching: Vec<&Value> = s
        .items
        .iter()
        .filter(|e| {
            let c = e["created"].as_i64().unwrap_or(0);
            gte.is_none_or(|g| c >= g)
                && lte.is_none_or(|l| c <= l)
                && (types.is_empty() || types.contains(&e["type"].as_str().unwrap_or("")))
        })
        .collect();
    let start = match one(&q, "starting_after") {
        None => 0,
        Some(id) => match matching.iter().position(|e| e["id"] == id) {
            Some(p) => p + 1,
            None => return s.reject(format!("stripe: starting_after {id} is not in the list")),
        },
    };
    let page: Vec<&Value> = matching
        .iter()
        .skip(start)
        .take(limit as usize)
        .copied()
        .collect();
    let has_more = start + page.len() < matching.len();
    axum::Json(json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": page}))
        .into_response()
}

// ---------------------------------------------------------------- Shopify

pub(crate) const SHOPIFY_TOKEN: &str = "shpat_reconcile";
pub(crate) const SHOPIFY_VERSION: &str = "2025-07";
/// The bucket's fill reported on the first page: the poller must slow down.
pub(crate) const SHOPIFY_NEAR_FULL: &str = "39/40";

/// Shopify's `GET /admin/api/<version>/orders.json` over `orders`.
pub(crate) async fn shopify(orders: Vec<Value>) -> StandIn {
    let shared = Shared {
        log: Arc::default(),
        items: Arc::new(orders),
    };
    let log = shared.log.clone();
    let router = Router::new()
        .route("/admin/api/{version}/orders.json", get(shopify_orders))
        .with_state(shared);
    let addr = serve(router).await;
    StandIn {
        base_url: format!("http://{addr}"),
        log,
    }
}

async fn shopify_orders(
    State(s): State<Shared>,
    axum::extract::Path(version): axum::extract::Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let n = s.record(format!(
        "/admin/api/{version}/orders.json?{}",
        raw.clone().unwrap_or_default()
    ));
    if headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        != Some(SHOPIFY_TOKEN)
    {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"errors": "[API] Invalid API key or access token"}).to_string(),
        )
            .into_response();
    }
    if version != SHOPIFY_VERSION {
        return s.reject(format!("shopify: API version {version}"));
    }
    if n == 1 {
        return too_many("1.0");
    }
    let q = pairs(&raw);
    let limit: usize = match one(&q, "limit").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(l)) if (1..=250).contains(&l) => l,
        _ => return s.reject("shopify: limit must be 1..=250".into()),
    };
    let offset = if let Some(info) = one(&q, "page_info") {
        // A page_info URL may carry limit and fields only.
        if let Some((k, _)) = q
            .iter()
            .find(|(k, _)| !["page_info", "limit", "fields"].contains(&k.as_str()))
        {
            return s.reject(format!(
                "shopify: {k} cannot be passed when page_info is present"
            ));
        }
        match decode_cursor(info) {
            Some(c) => c,
            None => return s.reject("shopify: page_info altered".into()),
        }
    } else {
        if one(&q, "status") != Some("any") {
            return s.reject(
                "shopify: status=any is needed to list closed and cancelled orders".into(),
            );
        }
        let t = |k: &str| one(&q, k).and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok());
        let (Some(min), Some(max)) = (t("updated_at_min"), t("updated_at_max")) else {
            return s.reject("shopify: updated_at_min and updated_at_max must be ISO 8601".into());
        };
        Cursor {
            min: min.unix_timestamp(),
            max: max.unix_timestamp(),
            offset: 0,
        }
    };
    let matching: Vec<&Value> = s
        .items
        .iter()
        .filter(|o| {
            let at = OffsetDateTime::parse(o["updated_at"].as_str().unwrap_or(""), &Rfc3339)
                .map(|t| t.unix_timestamp())
                .unwrap_or(0);
            at >= offset.min && at <= offset.max
        })
        .collect();
    let page: Vec<&Value> = matching
        .iter()
        .skip(offset.offset)
        .take(limit)
        .copied()
        .collect();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let mut out = HeaderMap::new();
    let used = if n == 2 { SHOPIFY_NEAR_FULL } else { "1/40" };
    out.insert("x-shopify-shop-api-call-limit", used.parse().unwrap());
    let mut links = Vec::new();
    let link = |c: &Cursor, rel: &str| {
        format!(
            "<http://{host}/admin/api/{version}/orders.json?limit={limit}&page_info={}>; rel=\"{rel}\"",
            encode_cursor(c)
        )
    };
    if offset.offset > 0 {
        links.push(link(
            &Cursor {
                offset: offset.offset.saturating_sub(limit),
                ..offset
            },
            "previous",
        ));
    }
    if offset.offset + page.len() < matching.len() {
        links.push(link(
            &Cursor {
                offset: offset.offset + limit,
                ..offset
            },
            "next",
        ));
    }
    if !links.is_empty() {
        out.insert("link", links.join(", ").parse().unwrap());
    }
    (out, axum::Json(json!({ "orders": page }))).into_response()
}

#[derive(Clone, Copy)]
struct Cursor {
    min: i64,
    max: i64,
    offset: usize,
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{}|{}", c.min, c.max, c.offset))
}

fn decode_cursor(s: &str) -> Option<Cursor> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let mut it = raw.split('|');
    Some(Cursor {
        min: it.next()?.parse().ok()?,
        max: it.next()?.parse().ok()?,
        offset: it.next()?.parse().ok()?,
    })
}

// ---------------------------------------------------------------- WooCommerce

pub(crate) const WOO_KEY: &str = "ck_reconcile";
pub(crate) const WOO_SECRET: &str = "cs_reconcile";

/// WooCommerce's `GET /wp-json/wc/v3/orders` over `orders`.
pub(crate) async fn woocommerce(orders: Vec<Value>) -> StandIn {
    let shared = Shared {
        log: Arc::default(),
        items: Arc::new(orders),
    };
    let log = shared.log.clone();
    let router = Router::new()
        .route("/wp-json/wc/v3/orders", get(woo_orders))
        .with_state(shared);
    let addr = serve(router).await;
    StandIn {
        base_url: format!("http://{addr}"),
        log,
    }
}

async fn woo_orders(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let n = s.record(format!(
        "/wp-json/wc/v3/orders?{}",
        raw.clone().unwrap_or_default()
    ));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{WOO_KEY}:{WOO_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"code": "woocommerce_rest_cannot_view"}).to_string(),
        )
            .into_response();
    }
    if n == 1 {
        return too_many("1");
    }
    let q = pairs(&raw);
    let per_page: usize = match one(&q, "per_page").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(p)) if (1..=100).contains(&p) => p,
        _ => return s.reject("woocommerce: per_page must be 1..=100".into()),
    };
    let page: usize = match one(&q, "page").map(str::parse::<usize>) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return s.reject("woocommerce: page must be >= 1".into()),
    };
    if one(&q, "dates_are_gmt") != Some("true") {
        return s.reject("woocommerce: dates_are_gmt=true expected (the bounds are GMT)".into());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let t = |k: &str| one(&q, k).and_then(|v| time::PrimitiveDateTime::parse(v, fmt).ok());
    let (Some(after), Some(before)) = (t("modified_after"), t("modified_before")) else {
        return s.reject("woocommerce: modified_after and modified_before must be ISO 8601".into());
    };
    let matching: Vec<&Value> = s
        .items
        .iter()
        .filter(|o| {
            time::PrimitiveDateTime::parse(o["date_modified_gmt"].as_str().unwrap_or(""), fmt)
                .is_ok_and(|m| m > after && m < before)
        })
        .collect();
    let total = matching.len();
    let pages = total.div_ceil(per_page);
    let items: Vec<&Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .copied()
        .collect();
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    out.insert("x-wp-total", total.to_string());
    out.insert("x-wp-totalpages", pages.to_string());
    let mut h = HeaderMap::new();
    for (k, v) in out {
        h.insert(k, v.parse().unwrap());
    }
    (h, axum::Json(items)).into_response()
}
