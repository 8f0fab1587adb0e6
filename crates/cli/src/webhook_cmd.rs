//! `storefold webhook send`: sign a payload exactly as the provider would and post
//! it to an ingest — how an operator tests an installation.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use time::OffsetDateTime;

use crate::Failed;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum WebhookCommand {
    /// Sign FILE as PROVIDER signs its webhooks and POST it to the ingest; prints the
    /// answer. Exits 0 only for a 2xx answer (4 otherwise).
    ///
    /// The secret is --secret, else the tenant's secret from the configuration. For
    /// PayPal the secret is `webhook_id: <id>` on the first line followed by the
    /// private key PEM (or, from the configuration, the provider's signing_key and
    /// webhook_id). With --provider collect the file is posted as a browser touch
    /// with an Origin header.
    Send(SendArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// Provider to impersonate (collect posts a browser touch).
    #[arg(long, value_parser = crate::provider_parser())]
    provider: ProviderKind,
    /// The provider topic or event type (required for the providers whose topic
    /// travels in a header: the stores).
    #[arg(long)]
    topic: Option<String>,
    /// Tenant id (the URL's path segment).
    #[arg(long)]
    tenant: String,
    /// Signing secret; defaults to the tenant's secret in the configuration.
    #[arg(long, env = "STOREFOLD_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Base URL of the ingest; defaults to http://<ingest.listen>.
    #[arg(long)]
    url: Option<String>,
    /// Origin header for --provider collect; defaults to the tenant's first allowed
    /// origin.
    #[arg(long)]
    origin: Option<String>,
    /// The payload file, sent byte for byte (`-` for standard input).
    file: PathBuf,
}

pub(crate) async fn run(config: Option<&Config>, command: WebhookCommand) -> Result<()> {
    let WebhookCommand::Send(args) = command;
    let body = crate::read_input(&args.file)?;
    let base = ingest_base(args.url.as_deref(), config, "--url")?;
    let mut headers: Vec<(String, String)> =
        vec![("content-type".into(), "application/json".into())];
    let url = if args.provider == ProviderKind::Collect {
        let origin = args
            .origin
            .clone()
            .or_else(|| {
                config?
                    .tenants
                    .get(&args.tenant)?
                    .collect_origins
                    .first()
                    .cloned()
            })
            .context("--provider collect needs --origin (or the tenant's collect_origins)")?;
        headers.push(("origin".into(), origin));
        format!("{base}/v1/collect/{}", args.tenant)
    } else {
        let secret = match &args.secret {
            Some(s) => s.clone(),
            None => config
                .and_then(|c| c.provider(&args.tenant, args.provider))
                .and_then(|p| p.signing_secret(args.provider))
                .with_context(|| {
                    format!(
                        "no secret: pass --secret, or configure tenants.{}.providers.{}{}",
                        args.tenant,
                        args.provider,
                        if args.provider == ProviderKind::Paypal {
                            " with signing_key and webhook_id"
                        } else {
                            ""
                        }
                    )
                })?,
        };
        let topic = match (&args.topic, args.provider) {
            (Some(t), _) => t.clone(),
            (None, p) if p.topic_header().is_some() => {
                bail!(
                    "--topic is required for {} (it travels in a header)",
                    args.provider
                )
            }
            (None, _) => String::new(),
        };
        let signed = sign_webhook(
            args.provider,
            &args.tenant,
            &secret,
            &topic,
            &body,
            OffsetDateTime::now_utc(),
        )?;
        return post(
            &format!("{base}{}", signed.path),
            &signed.headers,
            signed.body,
        )
        .await;
    };
    post(&url, &headers, body).await
}

/// The ingest's base URL: `url` (the option named `option`), else
/// `http://<ingest.listen>` of the configuration (loopback for a wildcard address).
pub(crate) fn ingest_base(
    url: Option<&str>,
    config: Option<&Config>,
    option: &str,
) -> Result<String> {
    Ok(match (url, config) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(c)) => local_url(c.ingest.listen),
        (None, None) => bail!("no {option} and no configuration to take ingest.listen from"),
    })
}

/// `http://<addr>`, with a wildcard address (`0.0.0.0`, `::`) read as loopback.
pub(crate) fn local_url(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    format!("http://{addr}")
}

/// A webhook request signed exactly as the provider signs it.
pub(crate) struct SignedWebhook {
    /// The URL path, with the token in the query for providers that sign nothing.
    pub(crate) path: String,
    /// Content type and the provider's signature headers.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Signs `body` as `provider` would for `tenant` with `secret` at `now`.
pub(crate) fn sign_webhook(
    provider: ProviderKind,
    tenant: &str,
    secret: &str,
    topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<SignedWebhook> {
    let signed = provider.sign(secret, topic, body, now).context("signing")?;
    let mut headers: Vec<(String, String)> =
        vec![("content-type".into(), "application/json".into())];
    headers.extend(signed.headers);
    let path =
        storefold_providers::webhook_path(tenant, provider.name(), signed.url_token.as_deref());
    Ok(SignedWebhook {
        path,
        headers,
        body: signed.body,
    })
}

/// POSTs `body` and prints the answer's status line and body; an error with
/// exit code 4 unless the answer is 2xx.
pub(crate) async fn post(url: &str, headers: &[(String, String)], body: Vec<u8>) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("HTTP client")?;
    let mut req = client.post(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    // The URL may hold a token: show it without the query.
    let shown = url.split('?').next().unwrap_or(url);
    let resp = req
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {shown}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(out, "HTTP {status}")?;
    if !text.is_empty() {
        writeln!(out, "{text}")?;
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(Failed(4, format!("POST {shown} answered {status}")).into())
    }
}
