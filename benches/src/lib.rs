//! Shared workload generators for the benchmarks: [`load`] posts a realistic mix of
//! signed webhooks at an HTTP endpoint and reports throughput and latency.

pub mod load;

/// A progress or result line on stderr (the benchmarks' stdout stays free).
pub fn say(s: String) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// The number after `name` on the command line, else `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next().and_then(|v| v.parse().ok()).unwrap_or(default);
        }
    }
    default
}
