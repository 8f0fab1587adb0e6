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
//!   (`{"inputs": [{"from": {"id": deal}, "to": {"id": contact}}]}`);
//! - `POST /crm/v4/associations/deals/contacts/batch/archive` ("Remove
//!   associations"): `{"inputs": [{"from": {"id": deal}, "to": [{"id":
//!   contact}]}]}` (`to` an array), answered 204 No Content; the pairs'
//!   associations are removed from the stand-in's state.
//!
//! **Contract checks** (each failure is a *violation*, counted, and answered as
//! HubSpot would — tests assert there are none): method and path; `Authorization:
//! Bearer <token>` (a well-formed header with the wrong token is a 401, counted
//! apart as `unauthorized`); `Content-Type: application/json`; the JSON shape;
//! 1 to 100 inputs; the `idProperty`; no duplicate ids in one batch; property
//! names the portal has (the stand-in is told which exist) with values of their
//! type: numbers as decimal strings, dates as midnight-UTC milliseconds (or
//! `YYYY-MM-DD`), datetimes as milliseconds (or ISO 8601); a new deal's required
//! `dealname` and `dealstage`; associations made and archived between records
//! that exist.
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

mod answer;
mod errors;
mod objects;
mod validate;

use answer::*;
use errors::*;
use objects::*;
use validate::*;

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
    let mut resp = if reply.status == StatusCode::NO_CONTENT {
        reply.status.into_response()
    } else {
        json_response(reply.status, reply.body)
    };
    if let Some(secs) = reply.retry_after {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).unwrap_or(HeaderValue::from_static("1")),
        );
    }
    resp
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

    fn stored(id: &str) -> Stored {
        Stored {
            id: id.into(),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn archiving_removes_associations_and_checks_the_documented_shape() {
        let mut st = State::default();
        st.deals.insert("o1".into(), stored("10"));
        st.contacts.insert("a@example.com".into(), stored("20"));
        st.contacts.insert("b@example.com".into(), stored("21"));
        st.associations.insert(("10".into(), "20".into()));
        st.associations.insert(("10".into(), "21".into()));
        // v3's shape (`to` an object) is not v4's.
        let r = archive_associations(
            &mut st,
            &[json!({"from": {"id": "10"}, "to": {"id": "20"}})],
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(st.violations.len(), 1);
        let r = archive_associations(&mut st, &[json!({"from": {"id": "10"}, "to": []})]);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = archive_associations(
            &mut st,
            &[json!({"from": {"id": "99"}, "to": [{"id": "20"}]})],
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(st.associations.len(), 2, "nothing applied");
        let r = archive_associations(
            &mut st,
            &[json!({"from": {"id": "10"}, "to": [{"id": "20"}]})],
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            st.associations,
            BTreeSet::from([("10".to_string(), "21".to_string())])
        );
        // A pair that is not associated (any more) is no error.
        let r = archive_associations(
            &mut st,
            &[json!({"from": {"id": "10"}, "to": [{"id": "20"}]})],
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(st.violations.len(), 3);
    }
}
