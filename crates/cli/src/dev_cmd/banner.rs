//! The banner `storefold dev` prints once every role runs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::Topics;

use super::{Access, DevArgs};

/// Prints where each role listens, the token, the topics and the state.
pub(super) fn print(
    config: &Config,
    http: SocketAddr,
    access: &Access,
    broker_port: SocketAddr,
    bootstrap: &str,
    args: &DevArgs,
    state_dir: &Path,
) {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\
storefold dev: the ingest, the processor{sink} and an embedded Kafka broker in one process.

  Public HTTP            http://{http} (webhooks, touches, /healthz, /readyz)
  Operator HTTP          {operator} (query API, /ui, /metrics; needs the token)
  Operator token         {token}
                         (admin, valid for this run only; send it as
                         Authorization: Bearer <token>)
  Inspector              {operator}/ui#token={token}
  Embedded broker        127.0.0.1:{port} (forwarded to {bootstrap}, the address it advertises:
                         clients such as kcat must be able to reach that one too)
  Topics                 {prefix}* with {partitions} partitions each (e.g. {raw})
  Processor state        {state} (wiped at every start)

The embedded broker is librdkafka's mock cluster: it keeps everything in memory, about
5 MiB per partition; records beyond that are dropped, and the processor then stops with an
offset-out-of-range error instead of skipping them. Its data dies with this process, so
`storefold dev` starts from fresh state every time instead of resuming on a log it no longer has.

For a real Kafka, put its address in a configuration file
([kafka] bootstrap_servers = \"broker:9092\", see storefold.example.toml) and run the roles:
  storefold --config storefold.toml topics create
  storefold --config storefold.toml run        (every role in one process; or apart:
  storefold --config storefold.toml ingest      ingest, process and sink <name>)
",
        sink = if args.postgres_url.is_some() {
            ", the PostgreSQL sink"
        } else {
            ""
        },
        operator = access.base,
        token = access.token,
        port = broker_port.port(),
        prefix = config.kafka.topic_prefix,
        partitions = config.kafka.partitions,
        raw = topics.raw(ProviderKind::Shopify),
        state = state_dir.display(),
    );
    let _ = out.flush();
}
