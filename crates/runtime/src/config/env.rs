//! `${VAR}` substitution and `STOREFOLD_<SECTION>__<KEY>` overrides, applied to the
//! TOML document before it is deserialised.

use std::collections::HashMap;

use super::{ConfigError, ENV_PREFIX};
/// Applies `STOREFOLD_A__B__C=value` as `a.b.c = value`. The value is read as a TOML
/// value when it is one (`12`, `true`, `["a"]`), else as a string.
pub(super) fn apply_overrides(
    doc: &mut toml::Table,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Override {
                var: var.clone(),
                message: "empty key segment".into(),
            });
        }
        let value = parse_override(raw);
        let mut table = &mut *doc;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Override {
                        var: var.clone(),
                        message: format!("{seg} is not a table"),
                    });
                }
            };
        }
        table.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

fn parse_override(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match wrapped.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Replaces `${VAR}` in every string with the variable's value (`$${` is a literal
/// `${`). A missing variable is an error naming the key.
pub(super) fn substitute(
    value: &mut toml::Value,
    path: &mut Vec<String>,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand(s, env).map_err(|message| ConfigError::Key {
                key: path.join("."),
                message,
            })?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                substitute(item, path, env)?;
                path.pop();
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                path.push(k.clone());
                substitute(v, path, env)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ in value".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{name}}} is not an environment variable name"));
        }
        let value = env
            .get(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
