//! Operator access: the listener that serves the query API, the Inspector
//! (`/ui`) and `/metrics`, and the API tokens that guard it.
//!
//! Tokens are stored in the configuration as the hex SHA-256 of the token
//! (`[[operator.tokens]]`, made by `storefold token new`); the token itself is
//! shown once and never stored. A token is a 256-bit random value, so a plain
//! SHA-256 is enough (no salt or slow hash: it cannot be guessed from its
//! hash). Requests carry it as `Authorization: Bearer <token>`; the presented
//! token's hash is compared with every configured hash in constant time.
//!
//! What a token may do is its scope: `admin` (every tenant and `/metrics`),
//! `tenants` (the query API and `/v1/tenants` for those tenants only) and
//! `metrics` (`/metrics`). See [`guard`] for the answers.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token `storefold token new` makes (it tells a leaked
/// string apart as a storefold token).
pub const TOKEN_PREFIX: &str = "sft_";

/// `[operator]`: where `storefold run` and `storefold dev` serve the query
/// API, `/ui` and `/metrics`, and who may call them. `storefold process`
/// serves the same routes, with the same tokens, on `processor.listen`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// The operator listener of `storefold run` (and `storefold dev`).
    pub listen: SocketAddr,
    /// The API tokens, by the SHA-256 of each.
    pub tokens: Vec<TokenConfig>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            tokens: Vec::new(),
        }
    }
}

/// One `[[operator.tokens]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (logged with each refused or granted scope, never the token).
    pub name: String,
    /// Hex SHA-256 of the token (64 hex digits).
    pub sha256: String,
    /// The tenants it may read.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Every tenant, and `/metrics`.
    #[serde(default)]
    pub admin: bool,
    /// `/metrics` (for a Prometheus scrape).
    #[serde(default)]
    pub metrics: bool,
}

impl OperatorConfig {
    /// Checks names, hashes and scopes; `tenants` are the configured tenant ids.
    pub fn validate<'a>(
        &self,
        tenants: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), String> {
        let known: BTreeSet<&String> = tenants.into_iter().collect();
        let mut names = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for t in &self.tokens {
            if t.name.trim().is_empty() {
                return Err("operator.tokens: every token needs a name".into());
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!(
                    "operator.tokens: the name {:?} is used twice",
                    t.name
                ));
            }
            let hash = parse_hash(&t.sha256).ok_or_else(|| {
                format!(
                    "operator.tokens {:?}: sha256 must be 64 hex digits (the SHA-256 of the \
                     token, as `storefold token new` prints it), not the token itself",
                    t.name
                )
            })?;
            if !hashes.insert(hash) {
                return Err(format!(
                    "operator.tokens {:?}: the same sha256 is configured twice",
                    t.name
                ));
            }
            if !t.admin && !t.metrics && t.tenants.is_empty() {
                return Err(format!(
                    "operator.tokens {:?}: give it tenants = [...], admin = true or metrics = true",
                    t.name
                ));
            }
            if t.admin && !t.tenants.is_empty() {
                return Err(format!(
                    "operator.tokens {:?}: an admin token reads every tenant; drop its tenants list",
                    t.name
                ));
            }
            for tenant in &t.tenants {
                if !known.contains(tenant) {
                    return Err(format!(
                        "operator.tokens {:?}: tenant {tenant:?} is not configured",
                        t.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `addr` may serve the operator routes with this configuration: a
    /// non-loopback address without any token is refused (anyone who reaches
    /// it would only ever get 401, and a forgotten token list must not look
    /// like a working deployment); `what` names the setting in the message.
    pub fn check_exposure(&self, addr: SocketAddr, what: &str) -> Result<(), String> {
        if self.tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(format!(
                "{what} is {addr}, reachable from other hosts, but no [[operator.tokens]] are \
                 configured: the query API, /ui and /metrics there would answer 401 to everyone. \
                 Make a token with `storefold token new --name <who> --admin` and add the \
                 printed [[operator.tokens]] entry, or listen on 127.0.0.1"
            ));
        }
        if self.tokens.is_empty() {
            tracing::warn!(
                %addr,
                "no [[operator.tokens]] configured: the query API, /v1/tenants and /metrics on \
                 {what} answer 401 to every request; make one with `storefold token new`"
            );
        }
        Ok(())
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// The hex SHA-256 of `token`, as `[[operator.tokens]] sha256` holds it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: [`TOKEN_PREFIX`] and 256 random bits in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What a token may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub admin: bool,
    pub metrics: bool,
    pub tenants: BTreeSet<String>,
}

impl Scope {
    /// Whether the query API of `tenant` is open to it.
    pub fn may_read_tenant(&self, tenant: &str) -> bool {
        self.admin || self.tenants.contains(tenant)
    }

    /// Whether `/metrics` is open to it.
    pub fn may_read_metrics(&self) -> bool {
        self.admin || self.metrics
    }
}

/// The caller of an operator request, once its token was accepted (a request
/// extension the handlers read, e.g. `/v1/tenants`).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's configured name.
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// The configured tenants this caller may read, in order.
    pub fn visible_tenants(&self, configured: &[String]) -> Vec<String> {
        configured
            .iter()
            .filter(|t| self.scope.may_read_tenant(t))
            .cloned()
            .collect()
    }
}

/// The configured tokens, ready to check requests against.
#[derive(Clone)]
pub struct Access {
    tokens: Vec<([u8; 32], Caller)>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field(
                "tokens",
                &self.tokens.iter().map(|(_, c)| &c.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Access {
    /// From a validated configuration (a hash that does not parse is skipped;
    /// [`OperatorConfig::validate`] refuses it before).
    pub fn new(config: &OperatorConfig) -> Access {
        let tokens = config
            .tokens
            .iter()
            .filter_map(|t| {
                let hash = parse_hash(&t.sha256)?;
                Some((
                    hash,
                    Caller {
                        name: t.name.clone(),
                        scope: Scope {
                            admin: t.admin,
                            metrics: t.metrics,
                            tenants: t.tenants.iter().cloned().collect(),
                        },
                    },
                ))
            })
            .collect();
        Access { tokens }
    }

    /// Whether no token is configured (every guarded route answers 401).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller `token` belongs to. Every configured hash is compared, in
    /// constant time, whichever matches.
    pub fn authenticate(&self, token: &str) -> Option<&Caller> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, caller) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(caller);
            }
        }
        found
    }
}

/// Which operator routes a path is, for the guard.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/healthz`, `/readyz`, and the Inspector's static page and assets
    /// (`/ui`, `/ui/…`; they hold no data): no token.
    Open,
    /// `/metrics`: an admin or metrics token.
    Metrics,
    /// `/v1/tenants`: any token (the list is filtered to its tenants).
    TenantList,
    /// `/v1/tenants/{tenant}/…`: a token for that tenant.
    Tenant(&'a str),
    /// Anything else: any valid token (the router's own 404s).
    Other,
}

/// Classifies a request path.
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/healthz" | "/readyz" | "/ui" => return Route::Open,
        "/metrics" => return Route::Metrics,
        "/v1/tenants" | "/v1/tenants/" => return Route::TenantList,
        _ => {}
    }
    if path.starts_with("/ui/") {
        return Route::Open;
    }
    if let Some(rest) = path.strip_prefix("/v1/tenants/") {
        let tenant = rest.split('/').next().unwrap_or_default();
        return Route::Tenant(tenant);
    }
    Route::Other
}

/// The bearer token of a request, if it has one.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn refuse(status: StatusCode, reason: &'static str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(serde_json::json!({"error": message, "reason": reason})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"storefold\""),
        );
    }
    r
}

/// The operator listener's middleware (`axum::middleware::from_fn_with_state`):
///
/// - open routes ([`Route::Open`]) pass;
/// - no `Authorization: Bearer`, or a token that is not configured: **401**
///   `unauthorized` with `WWW-Authenticate: Bearer`;
/// - `/metrics` with a token that is neither admin nor metrics: **403**
///   `forbidden`;
/// - `/v1/tenants/{tenant}/…` for a tenant the token does not cover: **404**
///   `no_such_tenant`, whether that tenant exists or not, so a tenant's token
///   cannot find out which other tenants exist (its tenants are configured
///   ones: [`OperatorConfig::validate`]); an admin token reaches the query
///   API, whose own 404 answers an unknown tenant's ids;
/// - otherwise the request goes on with its [`Caller`] as an extension.
pub async fn guard(State(access): State<Access>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let route = route(&path);
    if route == Route::Open {
        return next.run(req).await;
    }
    let Some(caller) = bearer(&req).and_then(|t| access.authenticate(t)).cloned() else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this needs an operator token: Authorization: Bearer <token> (see storefold token new)",
        );
    };
    match route {
        Route::Metrics if !caller.scope.may_read_metrics() => {
            tracing::info!(token = %caller.name, "token without the metrics scope refused /metrics");
            return refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may not read /metrics (it needs admin = true or metrics = true)",
            );
        }
        Route::Tenant(t) if !caller.scope.may_read_tenant(t) => {
            return refuse(
                StatusCode::NOT_FOUND,
                "no_such_tenant",
                "no such tenant for this token",
            );
        }
        _ => {}
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(
        name: &str,
        secret: &str,
        tenants: &[&str],
        admin: bool,
        metrics: bool,
    ) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: hash_token(secret),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            admin,
            metrics,
        }
    }

    fn config() -> OperatorConfig {
        OperatorConfig {
            listen: "127.0.0.1:8090".parse().unwrap(),
            tokens: vec![
                token("ops", "admin-secret", &[], true, false),
                token("support-a", "a-secret", &["a"], false, false),
                token("prom", "prom-secret", &[], false, true),
            ],
        }
    }

    fn tenants() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn the_hash_is_the_hex_sha256_of_the_token() {
        // sha256("abc"), FIPS 180-2's test vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn new_tokens_are_prefixed_random_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 64);
    }

    #[test]
    fn tokens_resolve_to_their_scope_and_unknown_ones_to_nothing() {
        let t = tenants();
        let access = Access::new(&config());
        let admin = access.authenticate("admin-secret").unwrap();
        assert_eq!(admin.name, "ops");
        assert!(admin.scope.may_read_tenant("b") && admin.scope.may_read_metrics());
        let a = access.authenticate("a-secret").unwrap();
        assert!(a.scope.may_read_tenant("a"));
        assert!(!a.scope.may_read_tenant("b"));
        assert!(!a.scope.may_read_metrics());
        assert_eq!(a.visible_tenants(&t), vec!["a".to_string()]);
        assert_eq!(admin.visible_tenants(&t), t);
        let prom = access.authenticate("prom-secret").unwrap();
        assert!(prom.scope.may_read_metrics() && !prom.scope.may_read_tenant("a"));
        assert!(prom.visible_tenants(&t).is_empty());
        assert!(access.authenticate("a-secret ").is_none());
        assert!(access.authenticate("").is_none());
        // The hash itself is not a token.
        assert!(access.authenticate(&hash_token("admin-secret")).is_none());
    }

    #[test]
    fn validation_refuses_bad_hashes_scopes_and_tenants() {
        let t = tenants();
        assert!(config().validate(&t).is_ok());
        let mut c = config();
        c.tokens[1].sha256 = "a-secret".into();
        assert!(c.validate(&t).unwrap_err().contains("64 hex digits"));
        let mut c = config();
        c.tokens[1].tenants = vec!["zz".into()];
        assert!(
            c.validate(&t)
                .unwrap_err()
                .contains("\"zz\" is not configured")
        );
        let mut c = config();
        c.tokens.push(token("nothing", "n", &[], false, false));
        assert!(c.validate(&t).unwrap_err().contains("give it tenants"));
        let mut c = config();
        c.tokens.push(token("ops", "other", &[], true, false));
        assert!(c.validate(&t).unwrap_err().contains("used twice"));
        let mut c = config();
        c.tokens
            .push(token("again", "admin-secret", &[], true, false));
        assert!(c.validate(&t).unwrap_err().contains("same sha256"));
        let mut c = config();
        c.tokens[0].tenants = vec!["a".into()];
        assert!(c.validate(&t).unwrap_err().contains("admin token"));
    }

    #[test]
    fn a_public_address_without_tokens_is_refused() {
        let none = OperatorConfig::default();
        let public: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        assert!(
            none.check_exposure(public, "operator.listen")
                .unwrap_err()
                .contains("storefold token new")
        );
        assert!(none.check_exposure(local, "operator.listen").is_ok());
        assert!(config().check_exposure(public, "operator.listen").is_ok());
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(route("/ui"), Route::Open);
        assert_eq!(route("/ui/app.js"), Route::Open);
        assert_eq!(route("/healthz"), Route::Open);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/v1/tenants"), Route::TenantList);
        assert_eq!(route("/v1/tenants/a/orders/x"), Route::Tenant("a"));
        assert_eq!(route("/v1/tenants/a"), Route::Tenant("a"));
        assert_eq!(route("/uix"), Route::Other);
        assert_eq!(route("/v1/other"), Route::Other);
    }
}
