//! A running ingest against librdkafka's mock cluster, for the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use storefold_codec::{AvroCodec, RawEvent};
use storefold_ingest::{Ingest, IngestError};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, topic_specs};
use storefold_testkit::broker::{MockBroker, Record, read_topic};
use storefold_testkit::samples;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 4;
pub const TENANT: &str = "acme";
/// A second tenant whose secrets all differ from `acme`'s.
pub const OTHER: &str = "globex";

/// The configuration of a test ingest on `bootstrap`, with `extra` TOML appended.
pub fn config(bootstrap: &str, extra_ingest: &str) -> Config {
    config_with(bootstrap, extra_ingest, "")
}

/// [`config`] with `tables` (more TOML tables, e.g. a tenant's) at the end.
pub fn config_with(bootstrap: &str, extra_ingest: &str, tables: &str) -> Config {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = {PARTITIONS}\n\
         [ingest]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout_secs = 10\n{extra_ingest}\n\
         {}\n\
         [tenants.{OTHER}]\ncollect_origins = [\"https://other.test\"]\n\
         [tenants.{OTHER}.providers.shopify]\nsecret = \"globex-shopify-secret\"\n\
         [tenants.{OTHER}.providers.stripe]\nsecret = \"whsec_globex\"\n{tables}",
        samples::tenant_toml(TENANT)
    );
    Config::from_toml_str(&toml, Vec::new()).expect("test config")
}

/// Creates every topic of the configuration through the mock.
pub fn create_topics(broker: &MockBroker, config: &Config) {
    for spec in topic_specs(&config.kafka, &[]) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("create topic");
    }
}

pub struct Running {
    pub base: String,
    pub addr: SocketAddr,
    pub ingest: Arc<Ingest>,
    pub registry: Registry,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), IngestError>>,
}

impl Running {
    pub async fn start(config: &Config) -> Running {
        let registry = Registry::new();
        let ingest = Ingest::new(config, &registry).expect("ingest");
        ingest
            .check_topics(&config.kafka)
            .await
            .expect("topics exist");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(storefold_ingest::serve(
            listener,
            ingest.clone(),
            registry.clone(),
            shutdown.clone(),
        ));
        Running {
            base: format!("http://{addr}"),
            addr,
            ingest,
            registry,
            shutdown,
            server,
        }
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, flush.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("server task")
            .expect("clean shutdown");
    }

    pub fn stopper(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Decoded raw events of `provider`'s topic with their records.
pub fn raw_events(
    bootstrap: &str,
    config: &Config,
    provider: storefold_providers::ProviderKind,
) -> Vec<(Record, RawEvent)> {
    let topic = Topics::new(&config.kafka.topic_prefix).raw(provider);
    let codec = AvroCodec::embedded().unwrap();
    read_topic(bootstrap, &topic, Duration::from_secs(20))
        .into_iter()
        .map(|r| {
            let ev: RawEvent = codec
                .decode(r.payload.as_deref().expect("payload"))
                .expect("a RawEvent");
            (r, ev)
        })
        .collect()
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
