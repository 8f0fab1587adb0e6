//! The query API (ARCHITECTURE §3), served from the local state of the tasks
//! this instance owns.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use storefold_core::engine::{FoldConfig, Item, StateKey, StateValue, order_view};
use storefold_core::identity::{normalize_email, normalize_phone};
use storefold_core::{CustomerId, IdentityKey, IdentityKind};
use storefold_runtime::kafka::java_partition;

use crate::db::{DbSource, TaskDb};
use crate::runner::Owned;

#[derive(Clone)]
struct Api {
    owned: Owned,
    partitions: i32,
    fold: Arc<FoldConfig>,
}

/// `GET /v1/tenants/{tenant}/customers/{id}`, `…/customers?email=|phone=`,
/// `…/orders/{id}`.
pub fn router(owned: Owned, partitions: i32, fold: Arc<FoldConfig>) -> Router {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/customers/{customer_id}",
            get(customer),
        )
        .route("/v1/tenants/{tenant}/customers", get(find_customer))
        .route("/v1/tenants/{tenant}/orders/{order_id}", get(order))
        .route("/v1/tenants/{tenant}/skus/{sku}", get(sku))
        .route("/v1/tenants/{tenant}/payouts/{payout}", get(payout))
        .with_state(Api {
            owned,
            partitions,
            fold,
        })
}

/// A non-2xx answer: `{"error", "reason"}` (and the partition for `not_owner`).
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    reason: &'static str,
    message: String,
    partition: Option<i32>,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "reason": self.reason});
        if let Some(p) = self.partition {
            body["partition"] = json!(p);
        }
        (self.status, Json(body)).into_response()
    }
}

fn fail(status: StatusCode, reason: &'static str, message: String) -> Fail {
    Fail {
        status,
        reason,
        message,
        partition: None,
    }
}

fn error(status: StatusCode, reason: &'static str, message: String) -> Response {
    fail(status, reason, message).into_response()
}

/// The store of the task owning `tenant`, or why this instance cannot answer.
fn store(api: &Api, tenant: &str) -> Result<std::sync::Arc<TaskDb>, Fail> {
    let p = java_partition(tenant.as_bytes(), api.partitions);
    let owned = api.owned.read().unwrap_or_else(|e| e.into_inner());
    owned.get(&p).cloned().ok_or_else(|| Fail {
        status: StatusCode::MISDIRECTED_REQUEST,
        reason: "not_owner",
        message: format!(
            "tenant {tenant} lives on partition {p}, which this processor instance does not own \
             (it owns {:?}); ask the instance that does",
            owned.keys().collect::<Vec<_>>()
        ),
        partition: Some(p),
    })
}

fn load(db: &TaskDb, key: &StateKey) -> Result<Option<StateValue>, Fail> {
    db.value(key).map_err(|e| {
        tracing::error!(error = %e, "query read failed");
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "state_unreadable",
            "the state could not be read".into(),
        )
    })
}

fn index(
    db: &TaskDb,
    tenant: &str,
    k: &IdentityKey,
) -> Result<Option<storefold_core::engine::IndexNode>, Fail> {
    Ok(
        match load(db, &StateKey::new(tenant, Item::Index(k.clone())))? {
            Some(StateValue::Index(n)) => Some(n),
            _ => None,
        },
    )
}

/// The customer stored under `k`, following a merge once.
fn resolve(db: &TaskDb, tenant: &str, k: &IdentityKey) -> Result<Option<Response>, Fail> {
    let mut key = k.clone();
    for _ in 0..4 {
        if let Some(StateValue::Customer(c)) =
            load(db, &StateKey::new(tenant, Item::Customer(key.clone())))?
        {
            let mut doc = serde_json::to_value(&*c.view).unwrap_or_default();
            if let Some(o) = doc.as_object_mut() {
                o.insert("version".into(), json!(c.version));
                if key != *k {
                    o.insert("resolved_from".into(), json!(k.customer_id().0));
                }
            }
            return Ok(Some(Json(doc).into_response()));
        }
        match index(db, tenant, &key)? {
            Some(n) if n.merged_into.is_some() => {
                key = n.merged_into.unwrap_or_else(|| key.clone())
            }
            Some(n) if key.kind != IdentityKind::Email && n.claimed_by.len() == 1 => {
                key = n
                    .claimed_by
                    .iter()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| key.clone());
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

async fn customer(State(api): State<Api>, Path((tenant, id)): Path<(String, String)>) -> Response {
    let db = match store(&api, &tenant) {
        Ok(db) => db,
        Err(r) => return r.into_response(),
    };
    let Some(k) = IdentityKey::from_customer_id(&CustomerId(id.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_customer",
            format!("no customer {id}"),
        );
    };
    match resolve(&db, &tenant, &k) {
        Ok(Some(r)) => r,
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no_such_customer",
            format!("no customer {id}"),
        ),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct Find {
    email: Option<String>,
    phone: Option<String>,
}

async fn find_customer(
    State(api): State<Api>,
    Path(tenant): Path<String>,
    Query(q): Query<Find>,
) -> Response {
    let db = match store(&api, &tenant) {
        Ok(db) => db,
        Err(r) => return r.into_response(),
    };
    let key = match (&q.email, &q.phone) {
        (Some(e), _) => normalize_email(e).map(|e| {
            // Under the tenant's alias policy, as the fold keyed it.
            let rules = api.fold.identity_rules(&tenant);
            let e = rules.canonical_email(&e).unwrap_or(e);
            IdentityKey::new(api.fold.key_scope(&tenant), IdentityKind::Email, &e)
        }),
        (None, Some(p)) => normalize_phone(p, None)
            .map(|p| IdentityKey::new(api.fold.key_scope(&tenant), IdentityKind::Phone, &p)),
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "missing_query",
                "give ?email= or ?phone=".into(),
            );
        }
    };
    let Some(k) = key else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_identity",
            "not a valid email address or phone number".into(),
        );
    };
    match resolve(&db, &tenant, &k) {
        Ok(Some(r)) => r,
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no_such_customer",
            "no customer with that identity".into(),
        ),
        Err(r) => r.into_response(),
    }
}

/// A SKU's cost history (what each order line's cost comes from), its stock as
/// last reported, and the days orders for it were placed.
async fn sku(State(api): State<Api>, Path((tenant, sku)): Path<(String, String)>) -> Response {
    let db = match store(&api, &tenant) {
        Ok(db) => db,
        Err(r) => return r.into_response(),
    };
    match load(&db, &StateKey::new(&tenant, Item::Sku(sku.clone()))) {
        Ok(Some(StateValue::Sku(s))) => Json(s).into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            "no_such_sku",
            format!("no SKU {sku}: no order line or inventory report named it"),
        ),
        Err(r) => r.into_response(),
    }
}

/// `…/payouts/{provider}:{payout_id}`: the payout's view and version.
async fn payout(
    State(api): State<Api>,
    Path((tenant, payout)): Path<(String, String)>,
) -> Response {
    let db = match store(&api, &tenant) {
        Ok(db) => db,
        Err(r) => return r.into_response(),
    };
    match load(&db, &StateKey::new(&tenant, Item::Payout(payout.clone()))) {
        Ok(Some(StateValue::Payout(p))) => {
            let mut doc = serde_json::to_value(storefold_core::engine::payout_view(&tenant, &p))
                .unwrap_or_default();
            if let Some(o) = doc.as_object_mut() {
                o.insert("version".into(), json!(p.version));
            }
            Json(doc).into_response()
        }
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            "no_such_payout",
            format!(
                "no payout {payout}: name it as provider:payout_id (stripe:po_…); no report named it"
            ),
        ),
        Err(r) => r.into_response(),
    }
}

async fn order(State(api): State<Api>, Path((tenant, id)): Path<(String, String)>) -> Response {
    let db = match store(&api, &tenant) {
        Ok(db) => db,
        Err(r) => return r.into_response(),
    };
    let src = DbSource::new(&db);
    let view = order_view(&src, &api.fold, &tenant, &id);
    if let Some(e) = src.take_error() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "state_unreadable",
            format!("order {id}: {e}"),
        );
    }
    let Some(view) = view else {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_order",
            format!("no order {id}"),
        );
    };
    let version = match load(&db, &StateKey::new(&tenant, Item::OrderMeta(id.clone()))) {
        Ok(Some(StateValue::OrderMeta(m))) => m.version,
        Ok(_) => 0,
        Err(r) => return r.into_response(),
    };
    let mut body = match serde_json::to_value(&view) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unserialisable",
                e.to_string(),
            );
        }
    };
    body["version"] = json!(version);
    Json(body).into_response()
}
