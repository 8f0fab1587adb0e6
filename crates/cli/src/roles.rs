//! Every role in one process: the ingest, the processor (with its query API and
//! the Inspector) and the chosen sinks, all metrics in one registry. The public
//! listener serves the ingest (webhooks, touches, `/healthz`, `/readyz`); the
//! operator listener the query API, `/ui`, `/v1/tenants` and `/metrics`
//! behind the operator tokens. `storefold run` starts them against the
//! configured Kafka, `storefold dev` against its embedded broker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use prometheus::Registry;
use storefold_ingest::Ingest;
use storefold_processor::{Mode, Processor, RunSummary, TaskError};
use storefold_runtime::config::Config;
use storefold_sinks::registry::{self, SinkSpec};
use storefold_sinks::runner::{RunOptions, SinkError, SinkMetrics};
use storefold_sinks::supervisor::{SinkHealth, supervise};
use storefold_sinks::{BoxedSink, Sink};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The processor loop's task.
pub(crate) type Folding = JoinHandle<Result<RunSummary, TaskError>>;

/// A sink's task: its name and how its run ended.
type SinkTask = (
    &'static str,
    JoinHandle<Result<storefold_sinks::runner::RunSummary, SinkError>>,
);

/// The sinks to run beside the processor, from the registry; each is built
/// from its `[sinks.<name>]` section of the configuration `Roles` starts with.
#[derive(Default)]
pub(crate) struct Sinks(pub(crate) Vec<&'static dyn SinkSpec>);

impl Sinks {
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.name()).collect()
    }
}

/// The running roles. [`Roles::shutdown`] stops them in order.
pub(crate) struct Roles {
    pub(crate) processor: Arc<Processor>,
    pub(crate) folding: Folding,
    ingest: Arc<Ingest>,
    sinks: Vec<SinkTask>,
    server: JoinHandle<std::io::Result<()>>,
    /// The operator listener's server.
    operator_server: JoinHandle<std::io::Result<()>>,
    /// Stops the HTTP server (after the ingest stopped accepting).
    stop_http: CancellationToken,
    /// Stops the processor loop and the sinks.
    stop_roles: CancellationToken,
}

impl Roles {
    /// Starts the processor (`mode`), the ingest and `sinks` on `config`'s Kafka
    /// and serves the ingest, `/healthz` and `/readyz` (the ingest's: Kafka
    /// reachable and not shutting down) on `http`, and the query API, `/ui`,
    /// `/v1/tenants`, `/metrics` (behind `[[operator.tokens]]`), `/healthz`
    /// and `/readyz` on `operator`.
    pub(crate) async fn start(
        config: &Config,
        http: TcpListener,
        operator: TcpListener,
        mode: Mode,
        sinks: Sinks,
    ) -> Result<Roles> {
        let registry = Registry::new();
        // The processor's rates file before anything starts: a file that
        // cannot be used refuses with its reason, not a Kafka error.
        let fold = config.fold_config().context("the processor")?;
        let ingest = Ingest::new(config, &registry).context("the ingest")?;
        ingest
            .check_topics(&config.kafka)
            .await
            .context("the ingest")?;
        let processor = {
            let cfg = config.clone();
            let registry = registry.clone();
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || Processor::with_fold(&cfg, fold, registry, handle))
                .await
                .context("starting the processor")?
                .context("the processor")?
        };
        let processor = Arc::new(processor);

        // Sinks connect before anything is served: a wrong URL or token stops
        // the start with its reason.
        let stop_roles = CancellationToken::new();
        let metrics = (!sinks.names().is_empty()).then(|| SinkMetrics::new(&registry));
        // A sink that fails later restarts with backoff and shows in the
        // operator /readyz; the ingest keeps accepting meanwhile.
        let health = metrics.as_ref().map(SinkHealth::new);
        let mut tasks: Vec<SinkTask> = Vec::new();
        if let Some(m) = &metrics {
            for spec in sinks.0 {
                let name = spec.name();
                let settings = spec
                    .settings(config)?
                    .ok_or_else(|| anyhow!(registry::not_configured(name)))?;
                let sink = spec
                    .build(config, &registry)
                    .await
                    .map_err(|e| anyhow!("the {name} sink: {e}"))?;
                let opts = settings.run_options(None);
                tasks.push(spawn_sink(sink, config, opts, m, &health, &stop_roles));
            }
        }

        // The public listener serves no operator route (`/metrics` included):
        // they are not in its router, so they are 404 like any unknown path.
        let app = storefold_ingest::public_app(ingest.clone());
        let stop_http = CancellationToken::new();
        // The operator listener's /readyz: serving until shutdown begins.
        let operator_app = {
            let stopping = stop_http.clone();
            let health = health.clone();
            let ready: storefold_runtime::server::ReadyCheck = Arc::new(move || {
                let stopping = stopping.is_cancelled();
                let sinks = health.as_ref().map_or(Ok(()), SinkHealth::check);
                Box::pin(async move {
                    if stopping {
                        Err("shutting down".to_string())
                    } else {
                        sinks
                    }
                })
            });
            processor.operator_router(storefold_runtime::server::ops_router(
                registry.clone(),
                ready,
            ))
        };
        let operator_server = {
            let stop = stop_http.clone();
            tokio::spawn(
                axum::serve(operator, operator_app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .into_future(),
            )
        };
        // The ingest's own listener: a client trickling its headers is cut off
        // after ingest.header_timeout_ms.
        let server = {
            let stop = stop_http.clone();
            let draining = ingest.clone();
            let serving = CancellationToken::new();
            let stop_serving = serving.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                draining.stop_accepting();
                stop_serving.cancel();
            });
            tokio::spawn(storefold_ingest::serve_public(
                http,
                app,
                Duration::from_millis(config.ingest.header_timeout_ms),
                serving,
            ))
        };
        let folding = {
            let p = processor.clone();
            let token = stop_roles.clone();
            let opts = crate::processor_options(config, mode);
            tokio::task::spawn_blocking(move || p.run_blocking(opts, token))
        };
        Ok(Roles {
            processor,
            folding,
            ingest,
            sinks: tasks,
            server,
            operator_server,
            stop_http,
            stop_roles,
        })
    }

    /// Waits until a role stops by itself (the processor or a sink failed, the
    /// HTTP server ended) and names it; [`Roles::shutdown`] then reports why.
    pub(crate) async fn stopped(&self) -> String {
        loop {
            if self.folding.is_finished() {
                return "the processor".into();
            }
            if self.server.is_finished() {
                return "the HTTP server".into();
            }
            if self.operator_server.is_finished() {
                return "the operator HTTP server".into();
            }
            if let Some((name, _)) = self.sinks.iter().find(|(_, t)| t.is_finished()) {
                return format!("the {name} sink");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops in order: the ingest stops accepting and finishes its in-flight
    /// requests (up to `ingest.shutdown_timeout_secs`) and its produces, then the
    /// processor loop and the sinks. Returns the first error a role stopped with.
    pub(crate) async fn shutdown(self, grace: Duration) -> Result<()> {
        let Roles {
            processor,
            folding,
            ingest,
            sinks,
            server,
            operator_server,
            stop_http,
            stop_roles,
        } = self;
        let mut outcome: Result<()> = Ok(());
        stop_http.cancel();
        match tokio::time::timeout(grace, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => outcome = Err(anyhow!(e).context("the HTTP server")),
            Ok(Err(e)) => outcome = Err(anyhow!("the HTTP server panicked: {e}")),
            Err(_) => tracing::warn!(?grace, "in-flight requests did not finish; closing"),
        }
        match tokio::time::timeout(Duration::from_secs(5), operator_server).await {
            Ok(Ok(Err(e))) => {
                outcome = outcome.and(Err(anyhow!(e).context("the operator HTTP server")));
            }
            Ok(Err(e)) => {
                outcome = outcome.and(Err(anyhow!("the operator HTTP server panicked: {e}")));
            }
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
        let publisher = ingest.publisher().clone();
        let _ = tokio::task::spawn_blocking(move || publisher.flush(Duration::from_secs(10))).await;
        drop(ingest);

        stop_roles.cancel();
        match tokio::time::timeout(Duration::from_secs(30), folding).await {
            Ok(Ok(Ok(summary))) => tracing::info!(
                events = summary.events,
                batches = summary.batches,
                "processor stopped"
            ),
            Ok(Ok(Err(e))) => outcome = outcome.and(Err(anyhow!(e).context("the processor"))),
            Ok(Err(e)) => outcome = outcome.and(Err(anyhow!("the processor panicked: {e}"))),
            Err(_) => tracing::warn!("the processor did not stop within 30 s"),
        }
        for (name, task) in sinks {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(summary))) => tracing::info!(
                    sink = name,
                    written = summary.written,
                    rejected = summary.rejected,
                    "sink stopped"
                ),
                Ok(Ok(Err(e))) => {
                    outcome = outcome.and(Err(anyhow!(e).context(format!("the {name} sink"))));
                }
                Ok(Err(e)) => {
                    outcome = outcome.and(Err(anyhow!("the {name} sink panicked: {e}")));
                }
                Err(_) => tracing::warn!(sink = name, "the sink did not stop within 15 s"),
            }
        }
        drop(processor);
        outcome
    }
}

/// Runs a sink until shutdown, restarted with backoff after each failure
/// (reported in `health` meanwhile).
fn spawn_sink(
    sink: BoxedSink,
    config: &Config,
    opts: RunOptions,
    metrics: &SinkMetrics,
    health: &Option<SinkHealth>,
    stop: &CancellationToken,
) -> SinkTask {
    let name = sink.name();
    let health = health.clone().unwrap_or_else(|| SinkHealth::new(metrics));
    let task = tokio::spawn(supervise(
        sink,
        config.clone(),
        opts,
        metrics.clone(),
        health,
        stop.clone(),
    ));
    (name, task)
}
