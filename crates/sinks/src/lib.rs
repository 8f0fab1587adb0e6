//! storefold sinks: keep a CRM in step with the projection topics.
//!
//! A sink consumes `customers`, `orders`, `payouts` and/or `triggers` in its
//! own consumer group, writes batches, and commits offsets only after a write succeeded.
//! Every write is an idempotent upsert guarded by `(generation, version)`, so
//! redeliveries and replays never move the CRM backwards.
//!
//! The pieces: [`Sink`] is what a destination implements (PostgreSQL, HubSpot,
//! webhook), each in its own directory with its writer, the type of its
//! `[sinks.<name>]` section, its [`registry::SinkSpec`] (name, section checks
//! and example, construction) and its unit tests; one line of `sinks!` below
//! declares the directory and lists the spec in [`registry::SINKS`], which the
//! CLI, `storefold run`, the configuration check, the dead-letter topics and
//! the processor's dead-letter gauges follow.
//! The runner owns Kafka, batching, "newest per key", retries with backoff and
//! `Retry-After`, the circuit breaker, the dead-letter topic and the metrics.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use storefold_codec::{CustomerProjection, OrderProjection, PayoutProjection, Trigger};

/// The longest a destination's `Retry-After` holds a sink unless configured
/// otherwise (`sinks.max_retry_after_secs`).
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// A projection topic a sink can consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Customers,
    Orders,
    /// Payouts with their lines; only the PostgreSQL sink consumes them.
    Payouts,
    Triggers,
}

impl Stream {
    /// The topic name without prefix, as used in config (`customers`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Customers => "customers",
            Stream::Orders => "orders",
            Stream::Payouts => "payouts",
            Stream::Triggers => "triggers",
        }
    }
}

/// A decoded projection or trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Customer(CustomerProjection),
    Order(OrderProjection),
    Payout(PayoutProjection),
    Trigger(Trigger),
}

impl Item {
    pub fn stream(&self) -> Stream {
        match self {
            Item::Customer(_) => Stream::Customers,
            Item::Order(_) => Stream::Orders,
            Item::Payout(_) => Stream::Payouts,
            Item::Trigger(_) => Stream::Triggers,
        }
    }

    /// `(generation, version)` of a projection; triggers have none (each is
    /// written once, deduplicated by `trigger_id`).
    pub fn generation_version(&self) -> Option<(i64, i64)> {
        match self {
            Item::Customer(c) => Some((c.generation, c.version)),
            Item::Order(o) => Some((o.generation, o.version)),
            Item::Payout(p) => Some((p.generation, p.version)),
            Item::Trigger(_) => None,
        }
    }
}

/// Where a record came from: for the dead-letter topic and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One record handed to a sink.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    pub item: Item,
    /// The Kafka key (`{tenant}/{id}`; `{tenant}/{provider}:{payout_id}` for
    /// a payout).
    pub key: Vec<u8>,
    /// The original value bytes and headers, copied to the DLQ on rejection.
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub source: SourcePosition,
    /// Receive time (ms since the epoch) of the raw event behind this record,
    /// from the `storefold-received-at` header, for the end-to-end latency.
    pub received_at_ms: Option<i64>,
}

/// A record the destination refused for a reason a retry cannot fix. The
/// runner sends it to `dlq.sink.<name>` with `code` and `reason` and moves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index into the batch passed to [`Sink::write`].
    pub index: usize,
    /// Short machine-readable code, e.g. `invalid_property_value`.
    pub code: String,
    /// The destination's own message.
    pub reason: String,
}

/// Why a whole write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Try the same batch again later (timeouts, 5xx, 429, connection loss).
    #[error("retryable: {message}")]
    Retryable {
        message: String,
        /// The destination said when to come back (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help and no single record is to blame (bad credentials,
    /// missing permission, misconfiguration): the sink stops with this error
    /// rather than dead-lettering everything.
    #[error("fatal: {message}")]
    Fatal { message: String },
}

/// A destination.
///
/// `write` receives at most one record per key (the newest `(generation,
/// version)` of the batch) and must be idempotent: the runner may hand the same
/// records again after a crash or a retry. It returns the records it rejected
/// for good; everything else counts as written.
pub trait Sink: Send {
    /// `postgres`, `hubspot`, `webhook`: the name in metrics, the DLQ topic and logs.
    fn name(&self) -> &'static str;
    /// The topics this sink consumes.
    fn streams(&self) -> Vec<Stream>;
    /// Runs once before consuming (migrations, connectivity checks).
    fn prepare(&mut self) -> impl Future<Output = Result<(), WriteError>> + Send {
        async { Ok(()) }
    }
    /// Writes a batch.
    fn write(
        &mut self,
        batch: &[SinkRecord],
    ) -> impl Future<Output = Result<Vec<Rejection>, WriteError>> + Send;
}

/// A sink lent to a run: [`supervisor::supervise`] runs the same sink again
/// after a failure (its metrics are registered once, its state kept).
impl<S: Sink> Sink for &mut S {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn streams(&self) -> Vec<Stream> {
        (**self).streams()
    }
    fn prepare(&mut self) -> impl Future<Output = Result<(), WriteError>> + Send {
        (**self).prepare()
    }
    fn write(
        &mut self,
        batch: &[SinkRecord],
    ) -> impl Future<Output = Result<Vec<Rejection>, WriteError>> + Send {
        (**self).write(batch)
    }
}

/// A boxed, sendable future: what the object-safe [`DynSink`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Sink`] in a form that can live behind a pointer (`Box<dyn DynSink>`), so
/// that the registry can build any sink and the runner run it without knowing
/// its type. Every [`Sink`] is one (blanket implementation); implement [`Sink`],
/// never this. The method names differ from [`Sink`]'s so that calls on a
/// concrete sink are never ambiguous.
pub trait DynSink: Send {
    /// [`Sink::name`].
    fn sink_name(&self) -> &'static str;
    /// [`Sink::streams`].
    fn sink_streams(&self) -> Vec<Stream>;
    /// [`Sink::prepare`], boxed.
    fn prepare_boxed(&mut self) -> BoxFuture<'_, Result<(), WriteError>>;
    /// [`Sink::write`], boxed.
    fn write_boxed<'a>(
        &'a mut self,
        batch: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Rejection>, WriteError>>;
}

impl<S: Sink> DynSink for S {
    fn sink_name(&self) -> &'static str {
        self.name()
    }
    fn sink_streams(&self) -> Vec<Stream> {
        self.streams()
    }
    fn prepare_boxed(&mut self) -> BoxFuture<'_, Result<(), WriteError>> {
        Box::pin(self.prepare())
    }
    fn write_boxed<'a>(
        &'a mut self,
        batch: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Rejection>, WriteError>> {
        Box::pin(self.write(batch))
    }
}

/// Any sink, as the registry builds it ([`registry::SinkSpec::build`]).
pub type BoxedSink = Box<dyn DynSink>;

/// A boxed sink runs like the sink inside (one allocation per write).
impl Sink for BoxedSink {
    fn name(&self) -> &'static str {
        (**self).sink_name()
    }
    fn streams(&self) -> Vec<Stream> {
        (**self).sink_streams()
    }
    async fn prepare(&mut self) -> Result<(), WriteError> {
        (**self).prepare_boxed().await
    }
    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, WriteError> {
        (**self).write_boxed(batch).await
    }
}

pub mod http;
pub mod registry;
pub mod runner;
pub mod supervisor;

/// Declares each sink's module (its directory) and lists its spec in
/// [`registry::SINKS`], in the order given.
macro_rules! sinks {
    ($($module:ident :: $spec:ident),+ $(,)?) => {
        $(pub mod $module;)+
        /// Every sink's spec, in the order `sinks!` lists them.
        const SPECS: &[&dyn registry::SinkSpec] = &[$(&$module::$spec),+];
    };
}

// Every sink storefold has, in the order `--help` lists them: adding a sink is
// its directory and one line here (`<module>::<Spec>`).
sinks! {
    postgres::PostgresSpec,
    hubspot::HubSpotSpec,
    webhook::WebhookSpec,
}

pub use runner::{RunOptions, RunSummary, SinkError};
