//! The Prometheus registry every role registers its metrics in, and its text
//! exposition for `/metrics`.

use prometheus::{Encoder, Registry, TextEncoder};

/// Histogram buckets for durations in seconds, from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram buckets for sizes in bytes, from 256 B to 4 MiB.
pub const SIZE_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
];

/// Renders `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    // Encoding into a Vec only fails on metric families that are invalid, which
    // registration already rejects.
    if let Err(e) = encoder.encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Builds a metric and registers it, panicking only on a programming error (a
/// duplicate or invalid name), which tests catch.
#[macro_export]
macro_rules! register {
    ($registry:expr, $metric:expr) => {{
        let m = $metric.expect("valid metric definition");
        $registry
            .register(Box::new(m.clone()))
            .expect("metric registered once");
        m
    }};
}
