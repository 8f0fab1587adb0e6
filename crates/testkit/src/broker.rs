//! Kafka brokers for tests: librdkafka's mock cluster (real Kafka protocol, in
//! memory, about 5 MiB per partition before it drops old data).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, ToBytes};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type Reply = mpsc::Sender<Result<(), String>>;

enum Cmd {
    Topic(String, i32, Reply),
    Down(i32, Reply),
    Up(i32, Reply),
}

/// A mock cluster owned by a thread of this process (the cluster handle itself is
/// not `Send`), controlled through this handle. Dropping it stops the cluster.
#[derive(Debug)]
pub struct MockBroker {
    bootstrap: String,
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    /// Starts a cluster of `brokers` brokers (ids 1..=brokers); panics when it
    /// cannot (see [`MockBroker::try_start`]).
    pub fn start(brokers: i32) -> MockBroker {
        Self::try_start(brokers).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a cluster of `brokers` brokers (ids 1..=brokers), or says why it
    /// cannot (for callers that report errors instead of panicking, such as
    /// `storefold dev`).
    pub fn try_start(brokers: i32) -> Result<MockBroker, String> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (boot_tx, boot_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = boot_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = boot_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Cmd::Topic(name, partitions, reply) => {
                            let _ = reply.send(
                                cluster
                                    .create_topic(&name, partitions, 1)
                                    .map_err(|e| e.to_string()),
                            );
                        }
                        Cmd::Down(id, reply) => {
                            let _ = reply.send(cluster.broker_down(id).map_err(|e| e.to_string()));
                        }
                        Cmd::Up(id, reply) => {
                            let _ = reply.send(cluster.broker_up(id).map_err(|e| e.to_string()));
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot spawn the mock cluster's thread: {e}"))?;
        let bootstrap = boot_rx
            .recv()
            .map_err(|_| "the mock cluster's thread ended before it started".to_string())?
            .map_err(|e| format!("cannot start librdkafka's mock cluster: {e}"))?;
        Ok(MockBroker {
            bootstrap,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// `host:port,…` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn call(&self, make: impl FnOnce(Reply) -> Cmd) -> Result<(), String> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or("broker stopped")?
            .send(make(reply))
            .map_err(|_| "mock cluster thread is gone".to_string())?;
        answer
            .recv()
            .map_err(|_| "mock cluster thread is gone".to_string())?
    }

    /// Creates a topic through the mock itself (it has no CreateTopics API).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        self.call(|r| Cmd::Topic(name.to_string(), partitions, r))
    }

    /// Takes broker `id` down: its connections drop and requests fail.
    pub fn down(&self, id: i32) -> Result<(), String> {
        self.call(|r| Cmd::Down(id, r))
    }

    /// Brings broker `id` back.
    pub fn up(&self, id: i32) -> Result<(), String> {
        self.call(|r| Cmd::Up(id, r))
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A mock cluster hosted by the `storefold-testkit-broker` binary in a process of its
/// own, so that the processes under test can be killed and restarted around it. The
/// process is killed when this handle is dropped.
#[derive(Debug)]
pub struct BrokerProcess {
    bootstrap: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl BrokerProcess {
    /// Starts the broker process with `brokers` brokers.
    pub fn start(brokers: i32) -> BrokerProcess {
        let bin = broker_binary();
        let mut child = Command::new(&bin)
            .arg("--brokers")
            .arg(brokers.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("broker prints its bootstrap");
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap=")
            .unwrap_or_else(|| panic!("unexpected first line from the broker: {line:?}"))
            .to_string();
        BrokerProcess {
            bootstrap,
            child,
            stdin,
            stdout,
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn call(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdin, "{line}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .map_err(|e| e.to_string())?;
        match answer.trim() {
            "ok" => Ok(()),
            other => Err(other.to_string()),
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), String> {
        self.call(&format!("topic {name} {partitions}"))
    }

    pub fn down(&mut self, id: i32) -> Result<(), String> {
        self.call(&format!("down {id}"))
    }

    pub fn up(&mut self, id: i32) -> Result<(), String> {
        self.call(&format!("up {id}"))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the `storefold-testkit-broker` binary is: `$STOREFOLD_TESTKIT_BROKER`, else
/// next to the running test's target directory, else built with cargo.
pub fn broker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STOREFOLD_TESTKIT_BROKER") {
        return PathBuf::from(p);
    }
    crate::workspace_binary("storefold-testkit", "storefold-testkit-broker")
}

/// One record as a topic holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Everything `topic` holds now, in partition then offset order. Panics when the
/// topic cannot be read within `timeout`.
pub fn read_topic(bootstrap: &str, topic: &str, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("testkit-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create reader");
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions: Vec<i32> = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while at_end.len() < partitions.len() {
        assert!(
            Instant::now() < deadline,
            "reading {topic}: only {}/{} partitions reached their end within {timeout:?}",
            at_end.len(),
            partitions.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                let headers = storefold_runtime::kafka::owned_headers(&m);
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Sends `rec`, waiting (while serving the producer's callbacks) as long as the
/// producer's queue is full; any other error is a failure of the test.
pub fn send_waiting<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &BaseProducer,
    mut rec: BaseRecord<'_, K, P>,
) {
    loop {
        match producer.send(rec) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("producing a record: {e}"),
        }
    }
    producer.poll(Duration::ZERO);
}
