//! Hosts librdkafka's mock cluster in a process of its own, for tests that kill and
//! restart the processes around it.
//!
//! Prints `bootstrap=<servers>` on its first line, then reads commands on stdin, one
//! per line, answering `ok` or `error: …`:
//! `topic <name> <partitions>`, `down <broker id>`, `up <broker id>`.
//! Exits when stdin closes.

use std::io::{BufRead, Write};

use storefold_testkit::broker::MockBroker;

fn main() {
    let mut brokers = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--brokers" => {
                brokers = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("--brokers needs a number"));
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let broker = MockBroker::start(brokers);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "bootstrap={}", broker.bootstrap());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = match words.as_slice() {
            ["topic", name, n] => n
                .parse()
                .map_err(|_| "partitions must be a number".to_string())
                .and_then(|n| broker.create_topic(name, n)),
            ["down", id] => id
                .parse()
                .map_err(|_| "broker id must be a number".to_string())
                .and_then(|id| broker.down(id)),
            ["up", id] => id
                .parse()
                .map_err(|_| "broker id must be a number".to_string())
                .and_then(|id| broker.up(id)),
            [] => continue,
            _ => Err(format!("unknown command {line:?}")),
        };
        let _ = match result {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
    }
}

fn usage(msg: &str) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "storefold-testkit-broker: {msg}\nusage: storefold-testkit-broker [--brokers N]"
    );
    std::process::exit(2)
}
