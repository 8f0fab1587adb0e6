//! What keeps the public endpoints up under abuse: load shedding, rate
//! limits per tenant and provider or client, and body reads bounded in size,
//! time and memory.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use governor::clock::{Clock, DefaultClock};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use storefold_providers::ProviderKind;
use tokio::sync::OwnedSemaphorePermit;

use crate::Ingest;
use crate::response::Rejection;

impl Ingest {
    /// 503 when more than `ingest.max_in_flight` requests are being handled (this
    /// one included): a slow Kafka must not make the ingest hold bodies without
    /// bound.
    pub(crate) fn shed_load(&self) -> Option<Rejection> {
        let in_flight = usize::try_from(self.metrics.in_flight.get()).unwrap_or(0);
        if in_flight <= self.settings.max_in_flight {
            return None;
        }
        let mut r = Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry later",
        );
        r.retry_after = Some(self.settings.retry_after_secs);
        Some(r)
    }

    /// 429 when the tenant's provider is over `ingest.webhook_requests_per_second`.
    pub(crate) fn limit_webhooks(&self, tenant: &str, kind: ProviderKind) -> Result<(), Rejection> {
        // Only configured tenants get here, so the keys are bounded.
        let key = (Arc::from(tenant), kind);
        self.webhook_limiter.check_key(&key).map_err(|not_until| {
            rate_limited(
                not_until,
                "too many webhooks for this tenant and provider; retry later",
            )
        })
    }

    /// 429 when the client (IPv6: its /64) or the tenant as a whole is over its
    /// rate. The client table holds at most `ingest.collect.max_clients`
    /// addresses: when it is full after dropping idle ones, clients not yet in
    /// it share one bucket per tenant, so a flood of addresses costs memory
    /// only up to the bound.
    pub(crate) fn limit_touches(&self, tenant: &str, client: IpAddr) -> Result<(), Rejection> {
        let tenant_key: Arc<str> = Arc::from(tenant);
        let mut client = storefold_runtime::net::client_key(client);
        if self.limiter.len() >= self.settings.collect.max_clients {
            if let Ok(mut last) = self.last_prune.try_lock()
                && last.elapsed() >= Duration::from_secs(1)
            {
                self.limiter.retain_recent();
                *last = Instant::now();
            }
            if self.limiter.len() >= self.settings.collect.max_clients {
                client = IpAddr::from([0, 0, 0, 0]);
            }
        }
        self.limiter
            .check_key(&(tenant_key.clone(), client))
            .map_err(|n| rate_limited(n, "too many touches from this client; slow down"))?;
        self.tenant_limiter
            .check_key(&tenant_key)
            .map_err(|n| rate_limited(n, "too many touches for this tenant; slow down"))
    }

    /// Reads the body up to `limit` bytes within `ingest.body_timeout_ms`,
    /// holding its share of `ingest.max_buffered_bytes` (returned with it, to
    /// be held until the request is answered). 413 beyond the limit (told by
    /// `Content-Length` before reading when the client sends one), 503 when
    /// the budget is spent, 408 when the body comes too slowly, 400 when the
    /// client breaks off.
    pub(crate) async fn read_body(
        &self,
        body: Body,
        headers: &HeaderMap,
        limit: usize,
    ) -> Result<(Bytes, OwnedSemaphorePermit), Rejection> {
        let too_large = || {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {limit} bytes"),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let reserve = declared.map_or(limit, |len| len as usize).max(1);
        let permit = u32::try_from(reserve)
            .ok()
            .and_then(|n| self.body_budget.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                let mut r = Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many request bodies held at once; retry later",
                );
                r.retry_after = Some(self.settings.retry_after_secs);
                r
            })?;
        let deadline = Duration::from_millis(self.settings.body_timeout_ms);
        match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => Ok((collected.to_bytes(), permit)),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(_)) => Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "the body could not be read (the client broke off)",
            )),
            Err(_) => {
                let mut r = Rejection::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the body did not arrive within {deadline:?}"),
                );
                r.close = true;
                Err(r)
            }
        }
    }
}

/// 429 with the limiter's wait as `Retry-After` (at least a second).
fn rate_limited(
    not_until: governor::NotUntil<governor::clock::QuantaInstant>,
    message: &'static str,
) -> Rejection {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    let mut r = Rejection::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    r.retry_after = Some(wait.as_secs().max(1));
    r
}
