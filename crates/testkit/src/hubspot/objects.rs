//! The CRM endpoints: batch upserts of contacts and deals, contact reads,
//! associations made and archived.

use super::*;

pub(super) fn upsert(
    cfg: &StandInConfig,
    st: &mut State,
    object: Object,
    inputs: &[Value],
) -> Reply {
    let (what, id_property, props) = match object {
        Object::Contact => ("contacts", "email", &cfg.contact_properties),
        Object::Deal => ("deals", cfg.deal_id_property.as_str(), &cfg.deal_properties),
    };
    // Shape first: a malformed input refuses the whole request.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut traced = 0;
    for (i, input) in inputs.iter().enumerate() {
        let Some(obj) = input.as_object() else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("{what} input {i} is not an object"),
            );
        };
        for k in obj.keys() {
            if !["id", "idProperty", "properties", "objectWriteTraceId"].contains(&k.as_str()) {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("{what} input {i}: unknown field {k:?}"),
                );
            }
        }
        let Some(id) = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("{what} input {i}: no id"),
            );
        };
        if obj.get("idProperty").and_then(Value::as_str) != Some(id_property) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!(
                    "{what} input {i}: idProperty {:?}, expected the unique property {id_property:?}",
                    obj.get("idProperty")
                ),
            );
        }
        if !seen.insert(id.to_lowercase()) {
            st.violations
                .push(format!("{what}: duplicate id {id:?} in one batch"));
            let body = json!({
                "status": "error",
                "message": format!("Duplicate IDs found in batch input: [{id}]. IDs must be unique"),
                "correlationId": correlation(st),
                "context": {"ids": [id]},
                "category": "VALIDATION_ERROR",
            });
            return Reply::new(StatusCode::BAD_REQUEST, body);
        }
        match obj.get("objectWriteTraceId") {
            None => {}
            Some(Value::String(_)) => traced += 1,
            Some(_) => {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("{what} input {i}: objectWriteTraceId is not a string"),
                );
            }
        }
        let Some(p) = obj.get("properties").and_then(Value::as_object) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("{what} input {i}: no properties object"),
            );
        };
        for (name, v) in p {
            if !v.is_string() {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("{what} input {i}: property {name} is not a string value"),
                );
            }
            if !(props.contains_key(name) || (object == Object::Contact && name == "email")) {
                st.violations
                    .push(format!("{what}: property {name:?} does not exist"));
                let body = json!({
                    "status": "error",
                    "message": format!("Property values were not valid: [{{\"isValid\":false,\"message\":\"Property \\\"{name}\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"{name}\"}}]"),
                    "correlationId": correlation(st),
                    "category": "VALIDATION_ERROR",
                    "errors": [{"message": format!("Property \"{name}\" does not exist"), "code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": [name]}}],
                });
                return Reply::new(StatusCode::BAD_REQUEST, body);
            }
        }
    }
    // Values: data errors fail their input; wrong formats are also violations.
    let mut errors: Vec<InputError> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let id = input["id"].as_str().unwrap_or_default().to_string();
        let trace = input
            .get("objectWriteTraceId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut fail = |code: String, message: String, property: Option<String>| {
            errors.push(InputError {
                index: i,
                trace: trace.clone(),
                id: id.clone(),
                code,
                message,
                property,
            })
        };
        if object == Object::Contact && !valid_email(&id) {
            fail(
                "INVALID_EMAIL".into(),
                format!("Email address {id} is invalid"),
                Some("email".into()),
            );
            continue;
        }
        let properties = input["properties"].as_object().cloned().unwrap_or_default();
        let mut failed = false;
        for (name, v) in &properties {
            let v = v.as_str().unwrap_or_default();
            let Some(ty) = props.get(name) else { continue };
            if let Err((code, message, is_violation)) = check_value(name, ty, v) {
                if is_violation {
                    st.violations.push(format!("{what} {id}: {message}"));
                }
                fail(code, message, Some(name.clone()));
                failed = true;
                break;
            }
        }
        if failed {
            continue;
        }
        if object == Object::Deal && !st.deals.contains_key(&id) {
            for required in ["dealname", "dealstage"] {
                if properties
                    .get(required)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    st.violations
                        .push(format!("deal {id}: created without {required}"));
                    fail(
                        "REQUIRED_PROPERTY".into(),
                        format!("Property {required} is required to create a deal"),
                        Some(required.into()),
                    );
                    break;
                }
            }
        }
    }
    let multi = cfg.batch_errors == BatchErrors::MultiStatus && traced == inputs.len();
    if !errors.is_empty() && !multi {
        // The whole batch is refused, nothing applied.
        let named = cfg.batch_errors != BatchErrors::Whole400Anonymous;
        let details: Vec<Value> = errors
            .iter()
            .map(|e| {
                let mut context = json!({});
                if let Some(p) = &e.property {
                    context["propertyName"] = json!([p]);
                }
                if named {
                    context["ids"] = json!([e.id]);
                    if let Some(t) = &e.trace {
                        context["objectWriteTraceId"] = json!([t]);
                    }
                }
                json!({"message": e.message, "code": e.code, "context": context})
            })
            .collect();
        let inner: Vec<Value> = errors
            .iter()
            .map(|e| json!({"isValid": false, "message": e.message, "error": e.code, "name": e.property}))
            .collect();
        let message = format!("Property values were not valid: {}", Value::Array(inner));
        let body = error_body(st, "VALIDATION_ERROR", &message, details);
        return Reply::new(StatusCode::BAD_REQUEST, body);
    }
    let started = now_rfc3339();
    let mut results = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if errors.iter().any(|e| e.index == i) {
            continue;
        }
        let id = input["id"].as_str().unwrap_or_default().to_string();
        let key = if object == Object::Contact {
            id.to_lowercase()
        } else {
            id.clone()
        };
        let properties = input["properties"].as_object().cloned().unwrap_or_default();
        let next_id = st.next_id;
        let store = match object {
            Object::Contact => &mut st.contacts,
            Object::Deal => &mut st.deals,
        };
        let is_new = !store.contains_key(&key);
        let rec = store.entry(key.clone()).or_insert_with(|| Stored {
            id: next_id.to_string(),
            properties: BTreeMap::from([(id_property.to_string(), key.clone())]),
        });
        for (name, v) in properties {
            let v = v.as_str().unwrap_or_default().to_string();
            if v.is_empty() {
                rec.properties.remove(&name);
            } else {
                rec.properties.insert(name, v);
            }
        }
        let out = json!({
            "id": rec.id,
            "properties": rec.properties,
            "createdAt": started,
            "updatedAt": started,
            "archived": false,
            "new": is_new,
            "objectWriteTraceId": input.get("objectWriteTraceId"),
        });
        if is_new {
            st.next_id += 1;
        }
        results.push(out);
    }
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": now_rfc3339(),
    });
    if errors.is_empty() {
        return Reply::new(StatusCode::OK, body);
    }
    let errs: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!(
                    "Property values were not valid: [{}]",
                    json!({"isValid": false, "message": e.message, "error": e.code, "name": e.property})
                ),
                "context": {"objectWriteTraceId": [e.trace]},
                "errors": [{"message": e.message, "code": e.code, "context": {"propertyName": [e.property]}}],
            })
        })
        .collect();
    body["numErrors"] = json!(errs.len());
    body["errors"] = Value::Array(errs);
    Reply::new(StatusCode::MULTI_STATUS, body)
}

pub(super) fn read_contacts(st: &mut State, body: &Value, inputs: &[Value]) -> Reply {
    if body.get("idProperty").and_then(Value::as_str) != Some("email") {
        return violation(
            st,
            StatusCode::BAD_REQUEST,
            "contacts read: idProperty is not email".into(),
        );
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(id) = input.get("id").and_then(Value::as_str) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("contacts read input {i}: no id"),
            );
        };
        match st.contacts.get(&id.to_lowercase()) {
            Some(c) => results.push(json!({
                "id": c.id,
                "properties": {"email": id.to_lowercase()},
                "archived": false,
            })),
            None => missing.push(id.to_string()),
        }
    }
    let now = now_rfc3339();
    let mut out =
        json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now});
    if missing.is_empty() {
        return Reply::new(StatusCode::OK, out);
    }
    out["numErrors"] = json!(1);
    out["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        "context": {"ids": missing},
    }]);
    Reply::new(StatusCode::MULTI_STATUS, out)
}

pub(super) fn associate(st: &mut State, inputs: &[Value]) -> Reply {
    let mut pairs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (Some(from), Some(to)) = (
            input.pointer("/from/id").and_then(Value::as_str),
            input.pointer("/to/id").and_then(Value::as_str),
        ) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("associations input {i}: no from.id / to.id"),
            );
        };
        if !st.deals.values().any(|d| d.id == from) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("associations: no deal {from}"),
            );
        }
        if !st.contacts.values().any(|c| c.id == to) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("associations: no contact {to}"),
            );
        }
        pairs.push((from.to_string(), to.to_string()));
    }
    let mut results = Vec::new();
    for (from, to) in pairs {
        results.push(json!({
            "from": {"id": from},
            "to": {"id": to},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3},
        }));
        st.associations.insert((from, to));
    }
    let now = now_rfc3339();
    Reply::new(
        StatusCode::OK,
        json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}),
    )
}

/// `POST /crm/v4/associations/deals/contacts/batch/archive`: each input a deal
/// (`from`, an object with an `id`) and the contacts (`to`, an *array* of
/// objects with an `id`) to remove every association with. Both must exist;
/// a pair that is not associated is no error. 204 No Content.
pub(super) fn archive_associations(st: &mut State, inputs: &[Value]) -> Reply {
    let mut pairs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(from) = input.pointer("/from/id").and_then(Value::as_str) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("archive input {i}: no from.id"),
            );
        };
        let Some(to) = input.get("to").and_then(Value::as_array) else {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("archive input {i}: to is not an array of {{\"id\": …}}"),
            );
        };
        if to.is_empty() {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("archive input {i}: to is empty"),
            );
        }
        if !st.deals.values().any(|d| d.id == from) {
            return violation(
                st,
                StatusCode::BAD_REQUEST,
                format!("archive: no deal {from}"),
            );
        }
        for t in to {
            let Some(to) = t.get("id").and_then(Value::as_str) else {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("archive input {i}: a to without id"),
                );
            };
            if !st.contacts.values().any(|c| c.id == to) {
                return violation(
                    st,
                    StatusCode::BAD_REQUEST,
                    format!("archive: no contact {to}"),
                );
            }
            pairs.push((from.to_string(), to.to_string()));
        }
    }
    for pair in pairs {
        st.associations.remove(&pair);
    }
    Reply::new(StatusCode::NO_CONTENT, Value::Null)
}
