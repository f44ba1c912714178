//! The .NET configuration rules the settings file follows, in one place: keys
//! match case-insensitively and are stored in the schema's spelling
//! (`canonical_keys`), and environment variables `Section__Key=value`
//! override the file (`apply_env`), as ASP.NET Core's configuration binder
//! does for an Ed-Fi `appsettings.json`.

use super::{SettingsError, err};
use serde_json::{Map, Value};

const ENV_SECTIONS: [&str; 6] = [
    "AppSettings",
    "ConnectionStrings",
    "Tenants",
    "SwaggerSettings",
    "Authentication",
    "TenantGateway",
];

/// Applies one environment variable to the settings document, if it is one of ours.
/// The settings schema (schemas/gateway-settings.schema.json): the spelling of
/// every key the gateway reads.
pub(super) static SETTINGS_SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!(
        "../../../schemas/gateway-settings.schema.json"
    ))
    .expect("the settings schema is JSON")
});

/// The schema node `node` refers to (`$ref: #/$defs/x`), else itself.
pub(super) fn resolved(node: &Value) -> &Value {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| SETTINGS_SCHEMA.get("$defs")?.get(name))
        .unwrap_or(node)
}

/// The named properties of a schema node, its branches (`allOf`, `oneOf`,
/// `anyOf`, `then`, `else`) included.
pub(super) fn schema_properties<'a>(node: &'a Value, out: &mut Vec<(&'a str, &'a Value)>) {
    let node = resolved(node);
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        out.extend(props.iter().map(|(k, v)| (k.as_str(), v)));
    }
    for branch in ["allOf", "oneOf", "anyOf"] {
        for b in node
            .get(branch)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            schema_properties(b, out);
        }
    }
    for branch in ["then", "else"] {
        if let Some(b) = node.get(branch) {
            schema_properties(b, out);
        }
    }
}

/// Gives every key the settings schema names its spelling there, matching
/// without regard to case, as .NET configuration does (`store`, `STORE`, and
/// `TENANTGATEWAY__STORE__ENGINE` from the environment all mean `Store`).
/// Names chosen by the user (tenants, apps, connection strings) are kept as
/// written. Two keys of one object that differ only in case are an error.
pub(super) fn canonical_keys(
    value: &mut Value,
    schema: &Value,
    path: &str,
) -> Result<(), SettingsError> {
    let node = resolved(schema);
    match value {
        Value::Object(map) => {
            let mut props = Vec::new();
            schema_properties(node, &mut props);
            let extra = node.get("additionalProperties").filter(|v| v.is_object());
            let old = std::mem::take(map);
            for (key, mut child) in old {
                let (name, sub) = match props.iter().find(|(p, _)| p.eq_ignore_ascii_case(&key)) {
                    Some((p, sub)) => ((*p).to_owned(), Some(*sub)),
                    None => (key, extra),
                };
                let child_path = format!("{path}.{name}");
                if let Some(sub) = sub {
                    canonical_keys(&mut child, sub, &child_path)?;
                }
                if map.contains_key(&name) {
                    let shown = child_path.trim_start_matches("$.");
                    return Err(err(shown, "is set twice, by keys that differ only in case"));
                }
                map.insert(name, child);
            }
        }
        Value::Array(items) => {
            if let Some(sub) = node.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    canonical_keys(item, sub, &format!("{path}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn apply_env(root: &mut Value, name: &str, value: String) -> Result<(), SettingsError> {
    let path: Vec<&str> = name.split("__").collect();
    if path.len() < 2
        || path.iter().any(|p| p.is_empty())
        || !ENV_SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(path[0]))
    {
        return Ok(());
    }
    let key = path.join(".");
    let strings_only = path
        .iter()
        .any(|p| p.eq_ignore_ascii_case("ConnectionStrings"));
    let mut node = root;
    for (i, segment) in path.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(err(
                &key,
                format!(
                    "environment variable {name} sets a key under a value that is not an object"
                ),
            ));
        };
        let existing = map
            .keys()
            .find(|k| k.eq_ignore_ascii_case(segment))
            .cloned();
        let slot = existing.unwrap_or_else(|| (*segment).to_owned());
        if i + 1 == path.len() {
            let old = map.get(&slot);
            let new = match old {
                Some(Value::Number(_)) => serde_json::from_str::<serde_json::Number>(&value)
                    .map(Value::Number)
                    .map_err(|_| {
                        err(
                            &key,
                            format!("environment variable {name} must be a number"),
                        )
                    })?,
                Some(Value::Bool(_)) => match value.to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        return Err(err(
                            &key,
                            format!("environment variable {name} must be true or false"),
                        ));
                    }
                },
                _ if strings_only => Value::String(value),
                _ => match serde_json::from_str::<Value>(&value) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                    _ => Value::String(value),
                },
            };
            map.insert(slot, new);
            return Ok(());
        }
        node = map.entry(slot).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}
