//! `storefold normalize`: what the fold sees for one provider payload.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use storefold_core::{Engine, MemStore, event::to_versioned_json};
use storefold_providers::{
    Headers, MapContext, MapOptions, ProviderKind, RawInput, WebhookRequest,
};
use storefold_runtime::config::Config;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, clap::Args)]
pub(crate) struct NormalizeArgs {
    /// Provider that sent the payload.
    #[arg(long, env = "STOREFOLD_PROVIDER", value_parser = crate::provider_parser())]
    provider: ProviderKind,
    /// Provider topic / event type (e.g. orders/create, charge.refunded). For
    /// providers whose topic is in the body (stripe, paypal, adyen, ...) it may be
    /// omitted and is read from the payload.
    #[arg(long)]
    topic: Option<String>,
    /// A request header, `Name: value` (repeatable), e.g. the Shopify topic header.
    #[arg(long = "header", value_name = "K:V")]
    headers: Vec<String>,
    /// Tenant the payload belongs to. With a configuration (--config, or
    /// ./storefold.toml), a configured tenant's stores, payment settings and
    /// reporting currency apply.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Time of receipt (RFC 3339), used only for payloads that carry no time.
    /// Defaults to now.
    #[arg(long)]
    received_at: Option<String>,
    /// The store platforms the tenant runs, the first one where a payment
    /// provider's bare order id points (comma-separated: woocommerce,shopify).
    /// Overrides the tenant's `stores`; default: the tenant's, else shopify.
    #[arg(long, value_delimiter = ',', value_name = "STORE")]
    stores: Vec<String>,
    /// Metadata key that holds the store's order id in Stripe payloads.
    /// Overrides the tenant's payments.stripe.order_metadata_keys; default:
    /// the tenant's, else order_id.
    #[arg(long)]
    order_metadata_key: Option<String>,
    /// Also fold the events and print the resulting projections (customer and
    /// order views, merges, triggers) as JSON lines.
    #[arg(long)]
    fold: bool,
    /// The payload file (`-` for standard input).
    file: PathBuf,
}

pub(crate) fn run(args: NormalizeArgs, config: Option<&Config>) -> Result<()> {
    let kind = args.provider;
    let body = crate::read_input(&args.file)?;
    let mut headers = Headers::new();
    for h in &args.headers {
        let Some((k, v)) = h.split_once(':') else {
            bail!("--header {h:?}: expected `Name: value`");
        };
        headers.insert(k.trim(), v.trim());
    }
    // Stores send the topic in a header; --topic stands in for it when absent.
    if let (Some(h), Some(t)) = (kind.topic_header(), &args.topic)
        && headers.get(h).is_none()
    {
        headers.insert(h, t);
    }
    let received_at = match &args.received_at {
        Some(s) => {
            OffsetDateTime::parse(s, &Rfc3339).with_context(|| format!("--received-at {s:?}"))?
        }
        None => OffsetDateTime::now_utc(),
    };
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: None,
    };
    // The topic and event id as the ingest would record them; a missing topic
    // header can be supplied with --topic.
    let (topic, event_id) = match kind.describe(&req) {
        Ok(inbound) => (
            args.topic.clone().unwrap_or(inbound.topic),
            inbound.event_id,
        ),
        Err(e) => match &args.topic {
            Some(t) => (
                t.clone(),
                format!("cli:{}", storefold_core::identity::content_hash(&body)),
            ),
            None => return Err(e).context("cannot tell the topic; pass --topic"),
        },
    };
    let tenant = config.and_then(|c| c.tenants.get(&args.tenant));
    let mut options = match tenant {
        Some(t) => t
            .map_options()
            .map_err(|e| anyhow!("tenants.{}.{}: {}", args.tenant, e.key, e.message))?,
        None => MapOptions::default(),
    };
    if !args.stores.is_empty() {
        for s in &args.stores {
            if !storefold_runtime::config::STORES.contains(&s.as_str()) {
                bail!(
                    "--stores: {s:?} is not a store storefold reads ({})",
                    storefold_runtime::config::STORES.join(", ")
                );
            }
        }
        options.stores = args.stores.clone();
    }
    if let Some(key) = &args.order_metadata_key {
        options.stripe.fields = vec![key.clone()];
    }
    let ctx = MapContext {
        tenant: &args.tenant,
        options: &options,
    };
    let input = RawInput {
        topic: &topic,
        event_id: &event_id,
        headers: &headers,
        body: &body,
        received_at,
    };
    let events = kind
        .map(&ctx, &input)
        .with_context(|| format!("{kind} {topic}: the payload cannot be mapped"))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for e in &events {
        writeln!(out, "{}", serde_json::to_string(&to_versioned_json(e))?)?;
    }
    if events.is_empty() {
        eprintln!("{kind} {topic}: accepted, no state change (no canonical events)");
    }
    if args.fold {
        let store = MemStore::default();
        // The configured reporting currencies and rates, when there is a configuration.
        let mut engine = match config {
            Some(c) => Engine::with_config(Arc::new(c.fold_config()?)),
            None => Engine::new(),
        };
        let received_ms = (received_at.unix_timestamp_nanos() / 1_000_000) as i64;
        for e in &events {
            let outcome = engine.apply_received(&store, e, Some(received_ms))?;
            eprintln!("{} {}: {outcome:?}", e.event.type_name(), e.event_id);
        }
        let batch = engine.finish(&store);
        for p in &batch.projections {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&serde_json::json!({"projection": p}))?
            )?;
        }
        for m in &batch.merges {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&serde_json::json!({"merge": m}))?
            )?;
        }
        for t in &batch.triggers {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&serde_json::json!({"trigger": t}))?
            )?;
        }
    }
    Ok(())
}
