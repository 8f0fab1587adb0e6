//! The embedded broker: testkit's mock cluster with every topic of the
//! configuration, and a fixed local port forwarded to the port it chose.

use anyhow::{Result, anyhow};
use storefold_testkit::broker::MockBroker;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Starts a one-broker mock cluster holding `topics` (name, partitions).
/// Dropping the handle stops the cluster and loses its data.
pub(super) fn start(topics: &[(String, i32)]) -> Result<MockBroker> {
    let broker =
        MockBroker::try_start(1).map_err(|e| anyhow!("cannot start the embedded broker: {e}"))?;
    for (name, partitions) in topics {
        broker
            .create_topic(name, *partitions)
            .map_err(|e| anyhow!("cannot start the embedded broker: creating {name}: {e}"))?;
    }
    Ok(broker)
}

/// Forwards every connection to `listener` to `target` (the mock cluster binds
/// a port of its own choosing).
pub(super) async fn forward(listener: TcpListener, target: String, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let target = target.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
