//! Avro contracts (filled in below).
