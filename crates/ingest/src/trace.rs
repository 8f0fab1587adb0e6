//! W3C trace context: every raw event carries a `traceparent`, continued from the
//! request when the caller sent a valid one, so one webhook can be followed through
//! the logs of every role.

use axum::http::HeaderMap;

/// A `traceparent` (version 00): trace id, this hop's span id and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// Continues the request's trace (new span id, same trace id and flags), or
    /// starts a new sampled one.
    pub fn continue_or_new(headers: &HeaderMap) -> Self {
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse);
        let span_id = loop {
            let id: [u8; 8] = rand::random();
            if id != [0; 8] {
                break id;
            }
        };
        match parent {
            Some(p) => Self {
                trace_id: p.trace_id,
                span_id,
                flags: p.flags,
            },
            None => Self {
                trace_id: loop {
                    let id: [u8; 16] = rand::random();
                    if id != [0; 16] {
                        break id;
                    }
                },
                span_id,
                flags: 1,
            },
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            return None;
        };
        if *version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let lower = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(lower(trace) && lower(span) && lower(flags)) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        hex::decode_to_slice(flags, &mut flag).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: flag[0],
        })
    }

    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The `traceparent` header value of this hop.
    pub fn header_value(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_parent_and_replaces_an_invalid_one() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let t = TraceContext::continue_or_new(&h);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.header_value().ends_with("-01"));
        assert_ne!(
            t.header_value(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        let fresh = TraceContext::continue_or_new(&HeaderMap::new());
        assert!(TraceContext::parse(&fresh.header_value()).is_some());
    }
}
