//! What `storefold erp load` and `storefold settlement load` share: a file
//! checked whole through its provider's mapper before anything is posted,
//! the body limit and the signing secret from the options or the
//! configuration, and the signed bodies posted in order, stopping at the
//! first one the ingest does not take.

use std::io::Write;

use anyhow::{Context, Result};
use storefold_core::Envelope;
use storefold_providers::{Headers, MapContext, MapOptions, ProviderKind, RawInput};
use storefold_runtime::config::Config;
use time::OffsetDateTime;

use crate::webhook_cmd::{ingest_base, post, sign_webhook};

/// One feed file being loaded for a tenant.
pub(crate) struct Feed<'a> {
    pub provider: ProviderKind,
    /// The topic the bodies are signed and mapped under.
    pub topic: &'a str,
    pub tenant: &'a str,
    pub config: Option<&'a Config>,
    /// The file as the user named it, for messages.
    pub shown: &'a str,
}

/// A body to post and the lines of the file it holds.
pub(crate) struct Body<'a> {
    pub first: usize,
    pub last: usize,
    pub bytes: &'a [u8],
}

impl Feed<'_> {
    /// Maps the whole file with `options`, as the processor will; an error
    /// says nothing was posted.
    pub(crate) fn check(&self, options: &MapOptions, body: &[u8]) -> Result<Vec<Envelope>> {
        let ctx = MapContext {
            tenant: self.tenant,
            options,
        };
        let headers = Headers::default();
        self.provider
            .map(
                &ctx,
                &RawInput {
                    topic: self.topic,
                    event_id: &format!("{}:check", self.provider.name()),
                    headers: &headers,
                    body,
                    received_at: OffsetDateTime::now_utc(),
                },
            )
            .with_context(|| format!("{}: nothing was posted", self.shown))
    }

    /// The largest body: `given`, else the configuration's
    /// `ingest.max_body_bytes`, else 1 MiB.
    pub(crate) fn max_bytes(&self, given: Option<usize>) -> usize {
        given
            .or_else(|| self.config.map(|c| c.ingest.max_body_bytes))
            .unwrap_or(1024 * 1024)
    }

    /// The ingest's base URL: `given`, else from `ingest.listen`.
    pub(crate) fn base(&self, given: Option<&str>) -> Result<String> {
        ingest_base(given, self.config, "--url")
    }

    /// The signing secret: `given`, else the tenant's in the configuration.
    pub(crate) fn secret(&self, given: Option<&String>) -> Result<String> {
        match given {
            Some(s) => Ok(s.clone()),
            None => self
                .config
                .and_then(|c| c.provider(self.tenant, self.provider))
                .and_then(|p| p.signing_secret(self.provider))
                .with_context(|| {
                    format!(
                        "no secret: pass --secret, or configure tenants.{}.providers.{}",
                        self.tenant,
                        self.provider.name()
                    )
                }),
        }
    }

    /// Signs and posts each body in order, printing its lines first; stops
    /// at the first body the ingest does not take, saying which lines are in.
    pub(crate) async fn post_all(
        &self,
        secret: &str,
        base: &str,
        bodies: impl IntoIterator<Item = Body<'_>>,
    ) -> Result<()> {
        for b in bodies {
            {
                let mut out = std::io::stdout().lock();
                writeln!(out, "lines {}-{}:", b.first, b.last)?;
            }
            let signed = sign_webhook(
                self.provider,
                self.tenant,
                secret,
                self.topic,
                b.bytes,
                OffsetDateTime::now_utc(),
            )?;
            post(
                &format!("{base}{}", signed.path),
                &signed.headers,
                signed.body,
            )
            .await
            .with_context(|| {
                format!(
                    "lines {}-{} were not taken (lines before {} were)",
                    b.first, b.last, b.first
                )
            })?;
        }
        Ok(())
    }
}
