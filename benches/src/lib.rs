//! Shared workload generators for the benchmarks: [`load`] posts a realistic mix of
//! signed webhooks at an HTTP endpoint and reports throughput and latency.

pub mod load;
