//! The broker host in its own process speaks Kafka: topics made through it can be
//! produced to and read back, and taking its broker down is visible to clients.
//! (Also makes cargo build `storefold-testkit-broker` with the workspace's tests.)

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_testkit::broker::{BrokerProcess, read_topic};

#[test]
fn a_broker_in_its_own_process_stores_and_serves_records() {
    let bin = env!("CARGO_BIN_EXE_storefold-testkit-broker");
    assert!(std::path::Path::new(bin).is_file());
    let mut broker = BrokerProcess::start(1);
    broker.create_topic("t", 3).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for i in 0..10 {
        let key = format!("k{i}");
        let payload = format!("v{i}");
        producer
            .send(BaseRecord::to("t").key(&key).payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let records = read_topic(broker.bootstrap(), "t", Duration::from_secs(10));
    assert_eq!(records.len(), 10);
    let mut payloads: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    payloads.sort();
    assert_eq!(payloads[0], "v0");
    // The control commands reach the mock.
    broker.down(1).unwrap();
    broker.up(1).unwrap();
    let again = broker.create_topic("t", 3).unwrap_err();
    assert!(again.contains("exists"), "{again}");
}
