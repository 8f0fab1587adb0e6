//! HubSpot's error bodies as the stand-in writes them.

use super::*;

pub(super) fn correlation(st: &mut State) -> String {
    st.correlation += 1;
    format!("00000000-0000-4000-8000-{:012x}", st.correlation)
}

pub(super) fn error_body(
    st: &mut State,
    category: &str,
    message: &str,
    errors: Vec<Value>,
) -> Value {
    let mut b = json!({
        "status": "error",
        "message": message,
        "correlationId": correlation(st),
        "category": category,
    });
    if !errors.is_empty() {
        b["errors"] = Value::Array(errors);
    }
    b
}

pub(super) fn violation(st: &mut State, status: StatusCode, what: String) -> Reply {
    st.violations.push(what.clone());
    let body = error_body(st, "VALIDATION_ERROR", &what, Vec::new());
    Reply::new(status, body)
}
