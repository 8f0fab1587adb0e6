//! A HubSpot stand-in: an HTTP server on 127.0.0.1 that checks every request
//! against HubSpot's documented contract and answers the way HubSpot does.
//!
//! HubSpot cannot run here, so the HubSpot sink's tests talk to this. It serves
//! the endpoints the sink uses, as documented on developers.hubspot.com:
//! - `POST /crm/v3/objects/contacts/batch/upsert` ("Create or update a batch of
//!   contacts by unique property values"): `{"inputs": [{"idProperty": "email",
//!   "id": "…", "objectWriteTraceId": "…", "properties": {…}}]}`;
//! - `POST /crm/v3/objects/deals/batch/upsert`, `idProperty` a unique-value deal
//!   property;
//! - `POST /crm/v3/objects/contacts/batch/read` by `idProperty: "email"`;
//! - `POST /crm/v4/associations/deals/contacts/batch/associate/default`
//!   (`{"inputs": [{"from": {"id": deal}, "to": {"id": contact}}]}`).
//!
//! **Contract checks** (each failure is a *violation*, counted, and answered as
//! HubSpot would — tests assert there are none): method and path; `Authorization:
//! Bearer <token>` (a well-formed header with the wrong token is a 401, counted
//! apart as `unauthorized`); `Content-Type: application/json`; the JSON shape;
//! 1 to 100 inputs; the `idProperty`; no duplicate ids in one batch; property
//! names the portal has (the stand-in is told which exist) with values of their
//! type: numbers as decimal strings, dates as midnight-UTC milliseconds (or
//! `YYYY-MM-DD`), datetimes as milliseconds (or ISO 8601); a new deal's required
//! `dealname` and `dealstage`; associations between records that exist.
//!
//! **Data errors** are not violations: an enumeration value that is not one of
//! the property's options (`INVALID_OPTION`) or an invalid email
//! (`INVALID_EMAIL`). A batch whose inputs all carry an `objectWriteTraceId`
//! gets HubSpot's 207 Multi-Status with one error per failed input (context
//! `objectWriteTraceId`) and the other inputs applied; otherwise (or in the
//! `Whole400*` modes) the whole batch is refused with a 400 `VALIDATION_ERROR`
//! and nothing is applied.
//!
//! **Failures on demand**: a rate limit per rolling 10 s (429, `policyName`
//! `TEN_SECONDLY_ROLLING`, `Retry-After`), a "429 storm" (every request 429 for
//! a while), an outage (503s, or connections refused: the listener closes and
//! comes back on the same port).
//!
//! Everything the sink did is readable: the stored contacts, deals and
//! associations, and every request with its arrival time.
//!
//! **Portals**: the token selects the portal, as on api.hubapi.com. The
//! configured `token` is the main portal; [`HubSpotStandIn::add_portal`] adds
//! another with its own token and its own records, limits and log. A request
//! carrying one portal's token never reads or writes another's records.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::time::Instant;

/// The type of a HubSpot property, as the stand-in checks values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyType {
    /// `string`: anything.
    Text,
    /// `number`: a decimal string (`-12.30`), no exponent.
    Number,
    /// `date`: midnight UTC in milliseconds, or `YYYY-MM-DD`.
    Date,
    /// `datetime`: milliseconds, or ISO 8601.
    DateTime,
    /// `enumeration`: one of `options` (several, `;`-separated, when `multi`,
    /// i.e. a multiple-checkbox property); the empty string clears it.
    Enumeration { options: Vec<String>, multi: bool },
}

impl PropertyType {
    pub fn options(options: &[&str], multi: bool) -> PropertyType {
        PropertyType::Enumeration {
            options: options.iter().map(|s| s.to_string()).collect(),
            multi,
        }
    }
}

/// How the stand-in answers a batch in which some inputs are invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchErrors {
    /// HubSpot's multi-status: 207 naming the failed inputs by
    /// `objectWriteTraceId` (when every input has one), the rest applied.
    MultiStatus,
    /// The whole batch is refused with a 400 whose errors name the failed
    /// inputs (`context.objectWriteTraceId` and `context.ids`).
    Whole400Naming,
    /// The whole batch is refused with a 400 naming only the property.
    Whole400Anonymous,
}

/// What the portal looks like.
#[derive(Clone, Debug)]
pub struct StandInConfig {
    /// The private app token expected in `Authorization: Bearer`.
    pub token: String,
    /// Requests allowed per rolling 10 s (429 beyond), `None` for no limit.
    pub rate_per_10s: Option<u32>,
    /// Contact properties the portal has (`email` always exists).
    pub contact_properties: BTreeMap<String, PropertyType>,
    /// Deal properties the portal has.
    pub deal_properties: BTreeMap<String, PropertyType>,
    /// The unique-value deal property deals are upserted by.
    pub deal_id_property: String,
    pub batch_errors: BatchErrors,
}

/// HubSpot's default sales pipeline stages (internal ids).
pub const DEFAULT_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

impl StandInConfig {
    /// A portal with HubSpot's standard properties and the custom properties the
    /// storefold sink maps to by default (its documented defaults).
    pub fn storefold_defaults(token: &str) -> Self {
        use PropertyType::*;
        let contact = [
            ("firstname", Text),
            ("lastname", Text),
            ("phone", Text),
            ("storefold_customer_id", Text),
            ("storefold_lifetime_value", Number),
            ("storefold_currency", Text),
            ("storefold_orders_count", Number),
            ("storefold_last_order_date", Date),
            ("storefold_first_utm_source", Text),
            ("storefold_last_utm_source", Text),
            ("storefold_open_tickets", Number),
            ("storefold_chargebacks", Number),
            (
                "storefold_segments",
                PropertyType::options(&storefold_core::aggregate::SEGMENTS, true),
            ),
            ("storefold_last_trigger", Text),
        ];
        let deal = [
            ("dealname", Text),
            ("amount", Number),
            ("storefold_currency", Text),
            ("dealstage", PropertyType::options(DEFAULT_STAGES, false)),
            ("pipeline", PropertyType::options(&["default"], false)),
            ("closedate", DateTime),
            ("storefold_order_status", Text),
            ("storefold_order_id", Text),
        ];
        Self {
            token: token.to_string(),
            rate_per_10s: None,
            contact_properties: contact
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            deal_properties: deal.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            deal_id_property: "storefold_order_id".into(),
            batch_errors: BatchErrors::MultiStatus,
        }
    }
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// HubSpot's record id.
    pub id: String,
    pub properties: BTreeMap<String, String>,
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// Arrival time since the stand-in started.
    pub at: Duration,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The parsed body (`Null` when it was not JSON).
    pub body: Value,
}

impl LoggedRequest {
    /// The body's `inputs`.
    pub fn inputs(&self) -> Vec<Value> {
        self.body
            .get("inputs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The `id` of every input (emails, order ids).
    pub fn input_ids(&self) -> Vec<String> {
        self.inputs()
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

/// How an outage looks from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Every request is answered 503.
    Unavailable,
    /// The listener is closed: connections are refused.
    Refused,
}

#[derive(Debug, Default)]
struct State {
    contacts: BTreeMap<String, Stored>,
    deals: BTreeMap<String, Stored>,
    associations: BTreeSet<(String, String)>,
    next_id: u64,
    log: Vec<LoggedRequest>,
    violations: Vec<String>,
    unauthorized: u64,
    rate_limited: u64,
    arrivals: VecDeque<Instant>,
    storm_until: Option<Instant>,
    /// The `Retry-After` of a storm's 429s (default `1`).
    storm_retry_after: Option<String>,
    unavailable_until: Option<Instant>,
    correlation: u64,
}

#[derive(Debug)]
struct Shared {
    cfg: Mutex<StandInConfig>,
    state: Mutex<State>,
    /// Further portals by token.
    portals: Mutex<BTreeMap<String, State>>,
    started: Instant,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn cfg(&self) -> StandInConfig {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn portals(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, State>> {
        self.portals.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// A copy of what portal `token` holds.
    fn portal<T>(&self, token: &str, f: impl FnOnce(&State) -> T) -> T {
        let portals = self.portals();
        let st = portals
            .get(token)
            .unwrap_or_else(|| panic!("no portal with token {token:?}"));
        f(st)
    }
}

/// The running stand-in (stops when dropped).
#[derive(Debug)]
pub struct HubSpotStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `true` while the listener should be closed.
    refuse: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HubSpotStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut tries = 0;
    loop {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(l) => return l,
            Err(e) => {
                tries += 1;
                assert!(
                    tries < 200,
                    "cannot bind the HubSpot stand-in to {addr}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl HubSpotStandIn {
    /// Starts the stand-in on 127.0.0.1 and a free port (inside a tokio runtime).
    pub async fn start(cfg: StandInConfig) -> HubSpotStandIn {
        let shared = Arc::new(Shared {
            cfg: Mutex::new(cfg),
            state: Mutex::new(State {
                next_id: 1000,
                ..State::default()
            }),
            portals: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        });
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        let addr = listener.local_addr().expect("local addr");
        let (refuse, mut refused) = watch::channel(false);
        let app_shared = shared.clone();
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let l = match listener.take() {
                    Some(l) => l,
                    None => bind(addr).await,
                };
                let s = app_shared.clone();
                let app = Router::new().fallback(move |method, uri, headers, body| {
                    handle(s.clone(), method, uri, headers, body)
                });
                let mut stop = refused.clone();
                let served = axum::serve(l, app).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|r| *r).await;
                });
                let _ = served.await;
                // Closed for an outage: wait for it to end, then listen again.
                if refused.wait_for(|r| !*r).await.is_err() {
                    return;
                }
            }
        });
        HubSpotStandIn {
            addr,
            shared,
            refuse,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: the sink's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a portal of its own reached with `token` (same properties and
    /// limits as the main one, separate records). Record ids differ between
    /// portals, as they do in HubSpot.
    pub fn add_portal(&self, token: &str) {
        let n = self.shared.portals().len() as u64 + 1;
        self.shared.portals().insert(
            token.to_string(),
            State {
                next_id: 1000 + n * 1_000_000,
                ..State::default()
            },
        );
    }

    /// Contacts of the portal of `token` (added with [`Self::add_portal`]).
    pub fn portal_contacts(&self, token: &str) -> BTreeMap<String, Stored> {
        self.shared.portal(token, |s| s.contacts.clone())
    }

    /// Deals of the portal of `token`.
    pub fn portal_deals(&self, token: &str) -> BTreeMap<String, Stored> {
        self.shared.portal(token, |s| s.deals.clone())
    }

    /// Associations of the portal of `token`.
    pub fn portal_associations(&self, token: &str) -> BTreeSet<(String, String)> {
        self.shared.portal(token, |s| s.associations.clone())
    }

    /// Requests that reached the portal of `token`.
    pub fn portal_requests(&self, token: &str) -> Vec<LoggedRequest> {
        self.shared.portal(token, |s| s.log.clone())
    }

    /// Contract violations in the portal of `token`.
    pub fn portal_violations(&self, token: &str) -> Vec<String> {
        self.shared.portal(token, |s| s.violations.clone())
    }

    /// Contacts by email.
    pub fn contacts(&self) -> BTreeMap<String, Stored> {
        self.shared.state().contacts.clone()
    }

    /// Deals by their id property's value.
    pub fn deals(&self) -> BTreeMap<String, Stored> {
        self.shared.state().deals.clone()
    }

    /// (deal id, contact id) pairs.
    pub fn associations(&self) -> BTreeSet<(String, String)> {
        self.shared.state().associations.clone()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.state().log.clone()
    }

    /// Contract violations, described.
    pub fn violations(&self) -> Vec<String> {
        self.shared.state().violations.clone()
    }

    /// Requests with a well-formed `Authorization` header but the wrong token.
    pub fn unauthorized(&self) -> u64 {
        self.shared.state().unauthorized
    }

    /// Requests answered 429 because they exceeded `rate_per_10s` (storms aside).
    pub fn rate_limited(&self) -> u64 {
        self.shared.state().rate_limited
    }

    /// The most requests that arrived within any `window` (all requests count,
    /// whatever their answer).
    pub fn busiest_window(&self, window: Duration) -> usize {
        let times: Vec<Duration> = self.shared.state().log.iter().map(|r| r.at).collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// Changes the portal (properties, rate, error mode) from now on.
    pub fn reconfigure(&self, f: impl FnOnce(&mut StandInConfig)) {
        f(&mut self.shared.cfg.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Every request gets 429 for `d` from now.
    pub fn storm(&self, d: Duration) {
        self.shared.state().storm_until = Some(Instant::now() + d);
    }

    /// Every request gets 429 for `d` from now, with this `Retry-After` value
    /// as given (any text: huge numbers, dates, garbage).
    pub fn storm_with_retry_after(&self, d: Duration, retry_after: &str) {
        let mut st = self.shared.state();
        st.storm_until = Some(Instant::now() + d);
        st.storm_retry_after = Some(retry_after.to_string());
    }

    /// An outage of `d` from now. Returns at once; the stand-in comes back by
    /// itself.
    pub fn outage(&self, kind: Outage, d: Duration) {
        match kind {
            Outage::Unavailable => {
                self.shared.state().unavailable_until = Some(Instant::now() + d);
            }
            Outage::Refused => {
                let _ = self.refuse.send(true);
                let tx = self.refuse.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = tx.send(false);
                });
            }
        }
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json;charset=utf-8",
        )],
        body.to_string(),
    )
        .into_response()
}

/// What a request came to, before it is logged.
struct Reply {
    status: StatusCode,
    body: Value,
    retry_after: Option<String>,
}

impl Reply {
    fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let mut cfg = shared.cfg();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let log = |st: &mut State, reply: &Reply, parsed: Value, path: String| {
        st.log.push(LoggedRequest {
            at: arrived - shared.started,
            method: method.to_string(),
            path,
            status: reply.status.as_u16(),
            body: parsed,
        });
    };
    let reply = {
        let mut portals = shared.portals();
        match bearer.as_deref().and_then(|t| portals.get_mut(t)) {
            // Another portal: its own records, answered with its own token.
            Some(st) => {
                cfg.token = bearer.clone().unwrap_or_default();
                let reply = answer(&cfg, st, arrived, &method, &path, &headers, &parsed, &body);
                log(st, &reply, parsed, path);
                reply
            }
            None => {
                drop(portals);
                let mut st = shared.state();
                let reply = answer(
                    &cfg, &mut st, arrived, &method, &path, &headers, &parsed, &body,
                );
                log(&mut st, &reply, parsed, path);
                reply
            }
        }
    };
    let mut resp = json_response(reply.status, reply.body);
    if let Some(secs) = reply.retry_after {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).unwrap_or(HeaderValue::from_static("1")),
        );
    }
    resp
}

fn correlation(st: &mut State) -> String {
    st.correlation += 1;
    format!("00000000-0000-4000-8000-{:012x}", st.correlation)
}

fn error_body(st: &mut State, category: &str, message: &str, errors: Vec<Value>) -> Value {
    let mut b = json!({
        "status": "error",
        "message": message,
        "correlationId": correlation(st),
        "category": category,
    });
    if !errors.is_empty() {
        b["errors"] = Value::Array(errors);
    }
    b
}

fn violation(st: &mut State, status: StatusCode, what: String) -> Reply {
    st.violations.push(what.clone());
    let body = error_body(st, "VALIDATION_ERROR", &what, Vec::new());
    Reply::new(status, body)
}

#[allow(clippy::too_many_arguments)]
fn answer(
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
        _ => violation(
            st,
            StatusCode::NOT_FOUND,
            format!("POST {path}: no such endpoint"),
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Object {
    Contact,
    Deal,
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.contains(char::is_whitespace)
        && !domain.contains('@')
}

fn is_decimal(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// A value's problem: `Err((code, message, is_violation))`.
fn check_value(name: &str, ty: &PropertyType, v: &str) -> Result<(), (String, String, bool)> {
    let bad = |code: &str, msg: String| Err((code.to_string(), msg, true));
    match ty {
        PropertyType::Text => Ok(()),
        PropertyType::Number => {
            if v.is_empty() || is_decimal(v) {
                Ok(())
            } else {
                bad(
                    "INVALID_DECIMAL",
                    format!("{v} was not a valid number for property {name}"),
                )
            }
        }
        PropertyType::Date => {
            if v.is_empty() {
                return Ok(());
            }
            if let Ok(ms) = v.parse::<i64>() {
                return if ms % 86_400_000 == 0 {
                    Ok(())
                } else {
                    bad(
                        "INVALID_DATE",
                        format!("{v} is not midnight UTC for date property {name}"),
                    )
                };
            }
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            if time::Date::parse(v, &fmt).is_ok() {
                Ok(())
            } else {
                bad(
                    "INVALID_DATE",
                    format!("{v} is not a valid date for {name}"),
                )
            }
        }
        PropertyType::DateTime => {
            if v.is_empty()
                || v.parse::<i64>().is_ok()
                || OffsetDateTime::parse(v, &Rfc3339).is_ok()
            {
                Ok(())
            } else {
                bad(
                    "INVALID_DATETIME",
                    format!("{v} is not a valid datetime for {name}"),
                )
            }
        }
        PropertyType::Enumeration { options, multi } => {
            if v.is_empty() {
                return Ok(());
            }
            let values: Vec<&str> = if *multi {
                v.split(';').collect()
            } else {
                vec![v]
            };
            for one in values {
                if !options.iter().any(|o| o == one) {
                    return Err((
                        "INVALID_OPTION".into(),
                        format!(
                            "{one} was not one of the allowed options: [{}]",
                            options.join(", ")
                        ),
                        false,
                    ));
                }
            }
            Ok(())
        }
    }
}

/// One input's failure.
struct InputError {
    index: usize,
    trace: Option<String>,
    id: String,
    code: String,
    message: String,
    property: Option<String>,
}

fn upsert(cfg: &StandInConfig, st: &mut State, object: Object, inputs: &[Value]) -> Reply {
    let (what, id_property, props) = match object {
        Object::Contact => ("contacts", "email", &cfg.contact_properties),
        Object::Deal => ("deals", cfg.deal_id_property.as_str(), &cfg.deal_properties),
    };
    // Shape first: a malformed input refuses the whole request.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut traced = 0;
    for (i, input) in inputs.iter().enumerate() {
        let Some(obj) = input.as_object() else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("{what} input {i} is not an object"),
            );
        };
        for k in obj.keys() {
            if !["id", "idProperty", "properties", "objectWriteTraceId"].contains(&k.as_str()) {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("{what} input {i}: unknown field {k:?}"),
                );
            }
        }
        let Some(id) = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("{what} input {i}: no id"),
            );
        };
        if obj.get("idProperty").and_then(Value::as_str) != Some(id_property) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!(
                    "{what} input {i}: idProperty {:?}, expected the unique property {id_property:?}",
                    obj.get("idProperty")
                ),
            );
        }
        if !seen.insert(id.to_lowercase()) {
            st.violations
                .push(format!("{what}: duplicate id {id:?} in one batch"));
            let body = json!({
                "status": "error",
                "message": format!("Duplicate IDs found in batch input: [{id}]. IDs must be unique"),
                "correlationId": correlation(st),
                "context": {"ids": [id]},
                "category": "VALIDATION_ERROR",
            });
            return Reply::new(StatusCode::BAD_REQUEST, body);
        }
        match obj.get("objectWriteTraceId") {
            None => {}
            Some(Value::String(_)) => traced += 1,
            Some(_) => {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("{what} input {i}: objectWriteTraceId is not a string"),
                );
            }
        }
        let Some(p) = obj.get("properties").and_then(Value::as_object) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("{what} input {i}: no properties object"),
            );
        };
        for (name, v) in p {
            if !v.is_string() {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("{what} input {i}: property {name} is not a string value"),
                );
            }
            if !(props.contains_key(name) || (object == Object::Contact && name == "email")) {
                st.violations
                    .push(format!("{what}: property {name:?} does not exist"));
                let body = json!({
                    "status": "error",
                    "message": format!("Property values were not valid: [{{\"isValid\":false,\"message\":\"Property \\\"{name}\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"{name}\"}}]"),
                    "correlationId": correlation(st),
                    "category": "VALIDATION_ERROR",
                    "errors": [{"message": format!("Property \"{name}\" does not exist"), "code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": [name]}}],
                });
                return Reply::new(StatusCode::BAD_REQUEST, body);
            }
        }
    }
    // Values: data errors fail their input; wrong formats are also violations.
    let mut errors: Vec<InputError> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let id = input["id"].as_str().unwrap_or_default().to_string();
        let trace = input
            .get("objectWriteTraceId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut fail = |code: String, message: String, property: Option<String>| {
            errors.push(InputError {
                index: i,
                trace: trace.clone(),
                id: id.clone(),
                code,
                message,
                property,
            })
        };
        if object == Object::Contact && !valid_email(&id) {
            fail(
                "INVALID_EMAIL".into(),
                format!("Email address {id} is invalid"),
                Some("email".into()),
            );
            continue;
        }
        let properties = input["properties"].as_object().cloned().unwrap_or_default();
        let mut failed = false;
        for (name, v) in &properties {
            let v = v.as_str().unwrap_or_default();
            let Some(ty) = props.get(name) else { continue };
            if let Err((code, message, is_violation)) = check_value(name, ty, v) {
                if is_violation {
                    st.violations.push(format!("{what} {id}: {message}"));
                }
                fail(code, message, Some(name.clone()));
                failed = true;
                break;
            }
        }
        if failed {
            continue;
        }
        if object == Object::Deal && !st.deals.contains_key(&id) {
            for required in ["dealname", "dealstage"] {
                if properties
                    .get(required)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    st.violations
                        .push(format!("deal {id}: created without {required}"));
                    fail(
                        "REQUIRED_PROPERTY".into(),
                        format!("Property {required} is required to create a deal"),
                        Some(required.into()),
                    );
                    break;
                }
            }
        }
    }
    let multi = cfg.batch_errors == BatchErrors::MultiStatus && traced == inputs.len();
    if !errors.is_empty() && !multi {
        // The whole batch is refused, nothing applied.
        let named = cfg.batch_errors != BatchErrors::Whole400Anonymous;
        let details: Vec<Value> = errors
            .iter()
            .map(|e| {
                let mut context = json!({});
                if let Some(p) = &e.property {
                    context["propertyName"] = json!([p]);
                }
                if named {
                    context["ids"] = json!([e.id]);
                    if let Some(t) = &e.trace {
                        context["objectWriteTraceId"] = json!([t]);
                    }
                }
                json!({"message": e.message, "code": e.code, "context": context})
            })
            .collect();
        let inner: Vec<Value> = errors
            .iter()
            .map(|e| json!({"isValid": false, "message": e.message, "error": e.code, "name": e.property}))
            .collect();
        let message = format!("Property values were not valid: {}", Value::Array(inner));
        let body = error_body(st, "VALIDATION_ERROR", &message, details);
        return Reply::new(StatusCode::BAD_REQUEST, body);
    }
    let started = now_rfc3339();
    let mut results = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if errors.iter().any(|e| e.index == i) {
            continue;
        }
        let id = input["id"].as_str().unwrap_or_default().to_string();
        let key = if object == Object::Contact {
            id.to_lowercase()
        } else {
            id.clone()
        };
        let properties = input["properties"].as_object().cloned().unwrap_or_default();
        let next_id = st.next_id;
        let store = match object {
            Object::Contact => &mut st.contacts,
            Object::Deal => &mut st.deals,
        };
        let is_new = !store.contains_key(&key);
        let rec = store.entry(key.clone()).or_insert_with(|| Stored {
            id: next_id.to_string(),
            properties: BTreeMap::from([(id_property.to_string(), key.clone())]),
        });
        for (name, v) in properties {
            let v = v.as_str().unwrap_or_default().to_string();
            if v.is_empty() {
                rec.properties.remove(&name);
            } else {
                rec.properties.insert(name, v);
            }
        }
        let out = json!({
            "id": rec.id,
            "properties": rec.properties,
            "createdAt": started,
            "updatedAt": started,
            "archived": false,
            "new": is_new,
            "objectWriteTraceId": input.get("objectWriteTraceId"),
        });
        if is_new {
            st.next_id += 1;
        }
        results.push(out);
    }
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": now_rfc3339(),
    });
    if errors.is_empty() {
        return Reply::new(StatusCode::OK, body);
    }
    let errs: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!(
                    "Property values were not valid: [{}]",
                    json!({"isValid": false, "message": e.message, "error": e.code, "name": e.property})
                ),
                "context": {"objectWriteTraceId": [e.trace]},
                "errors": [{"message": e.message, "code": e.code, "context": {"propertyName": [e.property]}}],
            })
        })
        .collect();
    body["numErrors"] = json!(errs.len());
    body["errors"] = Value::Array(errs);
    Reply::new(StatusCode::MULTI_STATUS, body)
}

fn read_contacts(st: &mut State, body: &Value, inputs: &[Value]) -> Reply {
    if body.get("idProperty").and_then(Value::as_str) != Some("email") {
        return violation(
            st,
            StatusCode::BAD_REQUEST,
            "contacts read: idProperty is not email".into(),
        );
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(id) = input.get("id").and_then(Value::as_str) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("contacts read input {i}: no id"),
            );
        };
        match st.contacts.get(&id.to_lowercase()) {
            Some(c) => results.push(json!({
                "id": c.id,
                "properties": {"email": id.to_lowercase()},
                "archived": false,
            })),
            None => missing.push(id.to_string()),
        }
    }
    let now = now_rfc3339();
    let mut out =
        json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now});
    if missing.is_empty() {
        return Reply::new(StatusCode::OK, out);
    }
    out["numErrors"] = json!(1);
    out["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        "context": {"ids": missing},
    }]);
    Reply::new(StatusCode::MULTI_STATUS, out)
}

fn associate(st: &mut State, inputs: &[Value]) -> Reply {
    let mut pairs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (Some(from), Some(to)) = (
            input.pointer("/from/id").and_then(Value::as_str),
            input.pointer("/to/id").and_then(Value::as_str),
        ) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("associations input {i}: no from.id / to.id"),
            );
        };
        if !st.deals.values().any(|d| d.id == from) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("associations: no deal {from}"),
            );
        }
        if !st.contacts.values().any(|c| c.id == to) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("associations: no contact {to}"),
            );
        }
        pairs.push((from.to_string(), to.to_string()));
    }
    let mut results = Vec::new();
    for (from, to) in pairs {
        results.push(json!({
            "from": {"id": from},
            "to": {"id": to},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3},
        }));
        st.associations.insert((from, to));
    }
    let now = now_rfc3339();
    Reply::new(
        StatusCode::OK,
        json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_type() {
        assert!(check_value("n", &PropertyType::Number, "-12.30").is_ok());
        assert!(check_value("n", &PropertyType::Number, "1e3").is_err());
        assert!(check_value("d", &PropertyType::Date, "1430438400000").is_ok());
        assert!(check_value("d", &PropertyType::Date, "1430438400001").is_err());
        assert!(check_value("d", &PropertyType::Date, "2015-05-01").is_ok());
        let e = PropertyType::options(&["a", "b"], true);
        assert!(check_value("e", &e, "a;b").is_ok());
        let err = check_value("e", &e, "a;c").unwrap_err();
        assert_eq!(err.0, "INVALID_OPTION");
        assert!(!err.2, "an option that is not allowed is the data's fault");
        assert!(valid_email("a@example.com"));
        assert!(!valid_email("not-an-email"));
        assert!(!valid_email("a@b"));
    }
}
