//! A HubSpot stand-in that serves HubSpot's GDPR delete besides the endpoints
//! the sink upserts with, for the erasure tests. (The shared stand-in,
//! `storefold_testkit::hubspot`, serves no GDPR delete; this one lives with
//! the sink's tests, checks less about property values, and more about what
//! the erasure needs: unique-value properties and deleted contacts.)
//!
//! Endpoints, as developers.hubspot.com documents them:
//! - `POST /crm/v3/objects/contacts/gdpr-delete` ("Permanently delete a contact
//!   (GDPR-compliant)"): body `{"objectId": "<string>", "idProperty":
//!   "<string>"}`, `objectId` required, `idProperty` optional, "the name of a
//!   property whose values are unique for this object" (without it `objectId`
//!   is the record id). Answered 204 No Content; the contact and its
//!   associations are gone. A contact that does not exist is a 404, except by
//!   email: "If email address is not found, the email address will be added to
//!   a blocklist" (204).
//! - `POST /crm/v3/objects/contacts/batch/upsert` by `idProperty: "email"`,
//!   `POST /crm/v3/objects/deals/batch/upsert` by the deal id property,
//!   `POST /crm/v3/objects/contacts/batch/read` by email,
//!   `POST /crm/v4/associations/deals/contacts/batch/associate/default`.
//!
//! Every request must be a `POST` with `Authorization: Bearer <token>` and
//! `Content-Type: application/json` and a body of the documented shape; what is
//! not is a *violation*: recorded, and answered 400 (401 for the token). An
//! `idProperty` that is not a unique-value property is a violation too.
//! [`GdprStandIn::throttle`] answers the next requests to a path 429 with a
//! `Retry-After`, as HubSpot's rate limit does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) const GDPR_DELETE: &str = "/crm/v3/objects/contacts/gdpr-delete";
pub(super) const CONTACTS_UPSERT: &str = "/crm/v3/objects/contacts/batch/upsert";
pub(super) const DEALS_UPSERT: &str = "/crm/v3/objects/deals/batch/upsert";
const CONTACTS_READ: &str = "/crm/v3/objects/contacts/batch/read";
const ASSOCIATE: &str = "/crm/v4/associations/deals/contacts/batch/associate/default";

/// A stored contact or deal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stored {
    /// HubSpot's record id.
    pub(super) id: String,
    pub(super) properties: BTreeMap<String, String>,
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub(super) struct Logged {
    pub(super) path: String,
    pub(super) status: u16,
    pub(super) body: Value,
}

#[derive(Debug, Default)]
struct State {
    token: String,
    /// Contact property → whether its values are unique.
    contact_properties: BTreeMap<String, bool>,
    deal_properties: BTreeSet<String>,
    deal_id_property: String,
    /// By email.
    contacts: BTreeMap<String, Stored>,
    /// By the deal id property's value.
    deals: BTreeMap<String, Stored>,
    /// (deal id, contact id).
    associations: BTreeSet<(String, String)>,
    /// Emails a GDPR delete found no contact for.
    blocklisted: BTreeSet<String>,
    next_id: u64,
    log: Vec<Logged>,
    violations: Vec<String>,
    /// (path, requests left, `Retry-After`).
    throttle: Option<(String, usize, String)>,
}

/// The running stand-in (stops when dropped).
pub(super) struct GdprStandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GdprStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GdprStandIn {
    /// A portal with the properties the sink maps to by default, reached with
    /// `token`; `storefold_customer_id` is a unique-value property.
    pub(super) async fn start(token: &str) -> GdprStandIn {
        let mut contact_properties: BTreeMap<String, bool> = [
            "firstname",
            "lastname",
            "phone",
            "storefold_lifetime_value",
            "storefold_currency",
            "storefold_orders_count",
            "storefold_last_order_date",
            "storefold_first_utm_source",
            "storefold_last_utm_source",
            "storefold_open_tickets",
            "storefold_chargebacks",
            "storefold_segments",
            "storefold_last_trigger",
        ]
        .into_iter()
        .map(|p| (p.to_string(), false))
        .collect();
        for unique in ["email", "hs_object_id", "storefold_customer_id"] {
            contact_properties.insert(unique.into(), true);
        }
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            contact_properties,
            deal_properties: [
                "dealname",
                "amount",
                "storefold_currency",
                "dealstage",
                "pipeline",
                "closedate",
                "storefold_order_status",
                "storefold_order_id",
            ]
            .into_iter()
            .map(str::to_string)
            .collect(),
            deal_id_property: "storefold_order_id".into(),
            next_id: 5000,
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = state.clone();
        let app = Router::new().fallback(move |method, uri, headers, body| {
            let s = shared.clone();
            async move { handle(&s, method, uri, headers, body) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GdprStandIn { addr, state, task }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Contacts by email.
    pub(super) fn contacts(&self) -> BTreeMap<String, Stored> {
        self.state().contacts.clone()
    }

    /// Deals by order id.
    pub(super) fn deals(&self) -> BTreeMap<String, Stored> {
        self.state().deals.clone()
    }

    /// (deal id, contact id) pairs.
    pub(super) fn associations(&self) -> BTreeSet<(String, String)> {
        self.state().associations.clone()
    }

    pub(super) fn requests(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    pub(super) fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// Answers the next `n` requests to `path` 429 with `Retry-After: retry_after`.
    pub(super) fn throttle(&self, path: &str, n: usize, retry_after: &str) {
        self.state().throttle = Some((path.into(), n, retry_after.into()));
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn error(st: &mut State, status: StatusCode, category: &str, message: String) -> Response {
    let correlation = format!("00000000-0000-4000-8000-{:012x}", st.log.len());
    reply(
        status,
        json!({"status": "error", "message": message, "correlationId": correlation, "category": category}),
    )
}

fn violation(st: &mut State, what: String) -> Response {
    st.violations.push(what.clone());
    error(st, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", what)
}

fn handle(
    shared: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
    let path = uri.path().to_string();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let resp = answer(&mut st, &method, &path, &headers, &parsed);
    st.log.push(Logged {
        path,
        status: resp.status().as_u16(),
        body: parsed,
    });
    resp
}

fn answer(
    st: &mut State,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Response {
    if let Some((p, left, retry_after)) = st.throttle.clone()
        && p == path
        && left > 0
    {
        st.throttle = Some((p, left - 1, retry_after.clone()));
        let mut r = reply(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "TEN_SECONDLY_ROLLING",
            }),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            retry_after.parse().expect("a header value"),
        );
        return r;
    }
    if method != Method::POST {
        return violation(st, format!("{method} {path}: only POST is used"));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(st.token.as_str()) {
        st.violations
            .push(format!("{path}: missing or wrong Authorization: Bearer"));
        return error(
            st,
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.".into(),
        );
    }
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return violation(st, format!("{path}: Content-Type is not application/json"));
    }
    if path == GDPR_DELETE {
        return gdpr_delete(st, body);
    }
    let Some(inputs) = body.get("inputs").and_then(Value::as_array).cloned() else {
        return violation(st, format!("{path}: no inputs array"));
    };
    if inputs.is_empty() || inputs.len() > 100 {
        return violation(st, format!("{path}: {} inputs (1-100)", inputs.len()));
    }
    match path {
        CONTACTS_UPSERT => upsert(st, true, &inputs),
        DEALS_UPSERT => upsert(st, false, &inputs),
        CONTACTS_READ => read(st, body, &inputs),
        ASSOCIATE => associate(st, &inputs),
        _ => {
            st.violations.push(format!("POST {path}: no such endpoint"));
            error(
                st,
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                "resource not found".into(),
            )
        }
    }
}

fn gdpr_delete(st: &mut State, body: &Value) -> Response {
    let Some(obj) = body.as_object() else {
        return violation(st, "gdpr-delete: the body is not a JSON object".into());
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["objectId", "idProperty"].contains(&k.as_str()))
    {
        return violation(st, format!("gdpr-delete: unknown field {k:?}"));
    }
    let Some(object_id) = obj
        .get("objectId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return violation(
            st,
            "gdpr-delete: objectId must be a non-empty string".into(),
        );
    };
    let id_property = match obj.get("idProperty") {
        None => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(other) => {
            return violation(
                st,
                format!("gdpr-delete: idProperty {other} is not a string"),
            );
        }
    };
    if let Some(p) = &id_property {
        match st.contact_properties.get(p) {
            Some(true) => {}
            Some(false) => {
                return violation(
                    st,
                    format!("gdpr-delete: idProperty {p:?} is not a unique-value property"),
                );
            }
            None => {
                return violation(st, format!("gdpr-delete: property {p:?} does not exist"));
            }
        }
    }
    let found = st
        .contacts
        .iter()
        .find(|(email, c)| match id_property.as_deref() {
            None | Some("hs_object_id") => c.id == object_id,
            Some("email") => email.as_str() == object_id.to_lowercase(),
            Some(p) => c.properties.get(p).map(String::as_str) == Some(object_id),
        })
        .map(|(email, c)| (email.clone(), c.id.clone()));
    match found {
        Some((email, id)) => {
            st.contacts.remove(&email);
            st.associations.retain(|(_, c)| *c != id);
            StatusCode::NO_CONTENT.into_response()
        }
        None if id_property.as_deref() == Some("email") => {
            st.blocklisted.insert(object_id.to_lowercase());
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            st,
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found".into(),
        ),
    }
}

/// Contacts (by email) or deals (by the deal id property).
fn upsert(st: &mut State, contacts: bool, inputs: &[Value]) -> Response {
    let id_property = if contacts {
        "email".to_string()
    } else {
        st.deal_id_property.clone()
    };
    let mut seen = BTreeSet::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(obj) = input.as_object() else {
            return violation(st, format!("input {i} is not an object"));
        };
        if let Some(k) = obj.keys().find(|k| {
            !["id", "idProperty", "properties", "objectWriteTraceId"].contains(&k.as_str())
        }) {
            return violation(st, format!("input {i}: unknown field {k:?}"));
        }
        let Some(id) = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return violation(st, format!("input {i}: no id"));
        };
        if obj.get("idProperty").and_then(Value::as_str) != Some(id_property.as_str()) {
            return violation(st, format!("input {i}: idProperty is not {id_property:?}"));
        }
        if !seen.insert(id.to_lowercase()) {
            return violation(st, format!("duplicate id {id:?} in one batch"));
        }
        let Some(props) = obj.get("properties").and_then(Value::as_object) else {
            return violation(st, format!("input {i}: no properties object"));
        };
        for (name, v) in props {
            let known = if contacts {
                st.contact_properties.contains_key(name)
            } else {
                st.deal_properties.contains(name)
            };
            if !known || !v.is_string() {
                return violation(
                    st,
                    format!("input {i}: property {name:?} unknown or not a string"),
                );
            }
        }
    }
    let mut results = Vec::new();
    for input in inputs {
        let id = input["id"].as_str().unwrap_or_default();
        let key = if contacts {
            id.to_lowercase()
        } else {
            id.to_string()
        };
        let props: BTreeMap<String, String> = input["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let store = if contacts { &st.contacts } else { &st.deals };
        let is_new = !store.contains_key(&key);
        if !contacts && is_new {
            for required in ["dealname", "dealstage"] {
                if props.get(required).is_none_or(String::is_empty) {
                    st.violations
                        .push(format!("deal {id}: created without {required}"));
                }
            }
        }
        // A unique property's value may belong to one contact only.
        if contacts {
            for (name, v) in &props {
                let unique = st.contact_properties.get(name) == Some(&true);
                if unique
                    && !v.is_empty()
                    && st
                        .contacts
                        .iter()
                        .any(|(e, c)| *e != key && c.properties.get(name) == Some(v))
                {
                    st.violations.push(format!(
                        "contact {id}: {name} {v:?} belongs to another contact"
                    ));
                }
            }
        }
        let next_id = st.next_id;
        let store = if contacts {
            &mut st.contacts
        } else {
            &mut st.deals
        };
        let rec = store.entry(key.clone()).or_insert_with(|| Stored {
            id: next_id.to_string(),
            properties: BTreeMap::from([(id_property.clone(), key.clone())]),
        });
        for (name, v) in props {
            if v.is_empty() {
                rec.properties.remove(&name);
            } else {
                rec.properties.insert(name, v);
            }
        }
        results.push(json!({
            "id": rec.id,
            "properties": rec.properties,
            "new": is_new,
            "objectWriteTraceId": input.get("objectWriteTraceId"),
        }));
        if is_new {
            st.next_id += 1;
        }
    }
    reply(
        StatusCode::OK,
        json!({"status": "COMPLETE", "results": results}),
    )
}

fn read(st: &mut State, body: &Value, inputs: &[Value]) -> Response {
    if body.get("idProperty").and_then(Value::as_str) != Some("email") {
        return violation(st, "contacts read: idProperty is not email".into());
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let Some(id) = input.get("id").and_then(Value::as_str) else {
            return violation(st, "contacts read: an input without id".into());
        };
        match st.contacts.get(&id.to_lowercase()) {
            Some(c) => {
                results.push(json!({"id": c.id, "properties": {"email": id.to_lowercase()}}))
            }
            None => missing.push(id.to_string()),
        }
    }
    if missing.is_empty() {
        return reply(
            StatusCode::OK,
            json!({"status": "COMPLETE", "results": results}),
        );
    }
    reply(
        StatusCode::MULTI_STATUS,
        json!({
            "status": "COMPLETE",
            "results": results,
            "numErrors": 1,
            "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                        "message": "Could not get some CONTACT objects", "context": {"ids": missing}}],
        }),
    )
}

fn associate(st: &mut State, inputs: &[Value]) -> Response {
    let mut pairs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (Some(from), Some(to)) = (
            input.pointer("/from/id").and_then(Value::as_str),
            input.pointer("/to/id").and_then(Value::as_str),
        ) else {
            return violation(st, format!("associations input {i}: no from.id / to.id"));
        };
        if !st.deals.values().any(|d| d.id == from) {
            return violation(st, format!("associations: no deal {from}"));
        }
        if !st.contacts.values().any(|c| c.id == to) {
            return violation(st, format!("associations: no contact {to}"));
        }
        pairs.push((from.to_string(), to.to_string()));
    }
    let results: Vec<Value> = pairs
        .iter()
        .map(|(f, t)| json!({"from": {"id": f}, "to": {"id": t}}))
        .collect();
    st.associations.extend(pairs);
    reply(
        StatusCode::OK,
        json!({"status": "COMPLETE", "results": results}),
    )
}
