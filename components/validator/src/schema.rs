//! The compiled JSON Schemas and the translation of schema errors into violations.
//!
//! Messages: a schema node may carry `x-messages` (keyword → message) for the
//! wording an API prescribes, e.g. the cache limit's "Cache size exceeds maximum
//! (100 GB)"; every other error gets a uniform message naming the field.

use crate::{CONFIG_SCHEMA, HONO_TENANT_SCHEMA, PATCH_SCHEMA, Violation, json_path};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Registry, ValidationError, Validator};
use serde_json::{Map, Value};

const CONFIG_ID: &str = "urn:tenant-gateway:schema:tenant-config";
const HONO_ID: &str = "urn:tenant-gateway:schema:hono-tenant";

pub(crate) struct Schemas {
    config_doc: Value,
    patch_doc: Value,
    hono_doc: Value,
    config: Validator,
    patch: Validator,
    hono: Validator,
}

impl Schemas {
    pub(crate) fn compile() -> Result<Self, String> {
        let config_doc: Value = serde_json::from_str(CONFIG_SCHEMA).map_err(|e| e.to_string())?;
        let patch_doc: Value = serde_json::from_str(PATCH_SCHEMA).map_err(|e| e.to_string())?;
        let hono_doc: Value =
            serde_json::from_str(HONO_TENANT_SCHEMA).map_err(|e| e.to_string())?;
        let registry = Registry::new()
            .add(CONFIG_ID, config_doc.clone())
            .map_err(|e| e.to_string())?
            .prepare()
            .map_err(|e| e.to_string())?;
        let build = |doc: &Value| {
            jsonschema::options()
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(doc)
                .map_err(|e| e.to_string())
        };
        let config = build(&config_doc)?;
        let patch = build(&patch_doc)?;
        let hono = build(&hono_doc)?;
        Ok(Self {
            config_doc,
            patch_doc,
            hono_doc,
            config,
            patch,
            hono,
        })
    }

    /// Every default the configuration schema declares, as one document, sections
    /// in schema order.
    pub(crate) fn defaults(&self) -> Value {
        let mut out = Map::new();
        let props = &self.config_doc["properties"];
        for section in crate::SECTIONS {
            let node = self.resolve_local(&props[section]);
            out.insert(section.to_owned(), self.defaults_of(node));
        }
        Value::Object(out)
    }

    fn defaults_of(&self, node: &Value) -> Value {
        if let Some(d) = node.get("default") {
            return d.clone();
        }
        let mut out = Map::new();
        if let Some(Value::Object(props)) = node.get("properties") {
            for (name, prop) in props {
                let prop = self.resolve_local(prop);
                if let Some(d) = prop.get("default") {
                    out.insert(name.clone(), d.clone());
                }
            }
        }
        Value::Object(out)
    }

    fn resolve_local<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|p| self.config_doc.pointer(p))
                .unwrap_or(node),
            None => node,
        }
    }

    pub(crate) fn check_config(&self, doc: &Value) -> Vec<Violation> {
        self.collect(&self.config, doc)
    }

    pub(crate) fn check_patch(&self, doc: &Value) -> Vec<Violation> {
        if !doc.is_object() {
            return vec![Violation::new("$", "The body must be a JSON object")];
        }
        self.collect(&self.patch, doc)
    }

    pub(crate) fn check_tenant_info(&self, doc: &Value) -> Vec<Violation> {
        if !doc.is_object() {
            return vec![Violation::new("$", "The body must be a JSON object")];
        }
        self.collect(&self.hono, doc)
    }

    fn collect(&self, validator: &Validator, doc: &Value) -> Vec<Violation> {
        // Most documents are valid: the yes/no check builds no errors, where
        // collecting them runs the error machinery even when there are none
        // (most of an update's validation time in the Wasm validator's profile).
        if validator.is_valid(doc) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for error in validator.iter_errors(doc) {
            self.translate(&error, &mut out);
        }
        out
    }

    /// The schema node that holds the keyword an error came from.
    fn node_of(&self, error: &ValidationError<'_>) -> Option<&Value> {
        let location = error.absolute_keyword_location()?;
        let text = location.as_str();
        let (base, pointer) = text.split_once('#')?;
        let doc = if base == CONFIG_ID {
            &self.config_doc
        } else if base == HONO_ID {
            &self.hono_doc
        } else {
            &self.patch_doc
        };
        let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
        doc.pointer(parent)
    }

    fn translate(&self, error: &ValidationError<'_>, out: &mut Vec<Violation>) {
        let pointer = error.instance_path().as_str();
        let path = json_path(pointer);
        let field = field_name(&path);
        let node = self.node_of(error);
        let custom = |keyword: &str| {
            node.and_then(|n| n.get("x-messages"))
                .and_then(|m| m.get(keyword))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let range = || {
            let n = node?;
            Some((n.get("minimum")?.clone(), n.get("maximum")?.clone()))
        };
        let message = match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let child = if path == "$" {
                        format!("$.{name}")
                    } else {
                        format!("{path}.{name}")
                    };
                    let what =
                        if pointer.is_empty() && (name == "tenant_id" || name == "updated_at") {
                            "is read-only and cannot be updated"
                        } else {
                            "is not a known field"
                        };
                    out.push(Violation::new(
                        child.clone(),
                        format!("`{}` {what}", field_name(&child)),
                    ));
                }
                return;
            }
            ValidationErrorKind::Maximum { .. } | ValidationErrorKind::Minimum { .. } => {
                let keyword = if matches!(error.kind(), ValidationErrorKind::Maximum { .. }) {
                    "maximum"
                } else {
                    "minimum"
                };
                custom(keyword).unwrap_or_else(|| match range() {
                    Some((lo, hi)) => format!("`{field}` must be between {lo} and {hi}"),
                    None => format!("`{field}` is out of range"),
                })
            }
            ValidationErrorKind::Type { kind } => {
                format!("`{field}` must be {}", type_phrase(kind))
            }
            ValidationErrorKind::Enum { options } => {
                let options: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(Value::to_string).collect())
                    .unwrap_or_default();
                format!("`{field}` must be one of {}", options.join(", "))
            }
            ValidationErrorKind::Pattern { .. } => custom("pattern").unwrap_or_else(|| match node
                .and_then(|n| n.get("description"))
                .and_then(Value::as_str)
            {
                Some(d) => format!("`{field}` has an invalid format (expected: {d})"),
                None => format!("`{field}` has an invalid format"),
            }),
            ValidationErrorKind::UniqueItems => format!("`{field}` must not repeat items"),
            ValidationErrorKind::MaxItems { limit } => {
                format!("`{field}` must have at most {limit} items")
            }
            ValidationErrorKind::MaxProperties { limit } => {
                format!("`{field}` must have at most {limit} entries")
            }
            ValidationErrorKind::MinProperties { .. } if pointer.is_empty() => {
                "The update sets no configuration field".to_owned()
            }
            ValidationErrorKind::Required { property } => {
                format!("`{field}` requires `{}`", property.as_str().unwrap_or("?"))
            }
            ValidationErrorKind::MinLength { .. } => format!("`{field}` must not be empty"),
            ValidationErrorKind::MaxLength { limit } => {
                format!("`{field}` must be at most {limit} characters")
            }
            _ => format!("`{field}`: {error}"),
        };
        out.push(Violation::new(path, message));
    }
}

fn field_name(path: &str) -> &str {
    match path.strip_prefix("$.") {
        Some(rest) => rest,
        None => path,
    }
}

fn type_phrase(kind: &TypeKind) -> String {
    use jsonschema::JsonType;
    let one = |t: &JsonType| match t {
        JsonType::Array => "an array",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Null => "null",
        JsonType::Number => "a number",
        JsonType::Object => "an object",
        JsonType::String => "a string",
    };
    match kind {
        TypeKind::Single(t) => one(t).to_owned(),
        TypeKind::Multiple(set) => {
            let names: Vec<&str> = set.iter().map(|t| one(&t)).collect();
            names.join(" or ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Schemas {
        Schemas::compile().unwrap()
    }

    #[test]
    fn config_schema_accepts_a_full_document() {
        let s = schemas();
        let mut doc = s.defaults();
        doc["tenant_id"] = json!("550e8400-e29b-41d4-a716-446655440000");
        doc["updated_at"] = json!("2025-12-09T10:30:00Z");
        doc["security"]["kms_key_id"] =
            json!("arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012");
        doc["backup"]["destinations"] = json!([{"destination_type":"s3","bucket":"b","region":"us-east-1","path":"/t","credentials_id":"c"}]);
        assert_eq!(s.check_config(&doc), []);
    }

    #[test]
    fn config_schema_rejects_bad_fixtures() {
        let s = schemas();
        let cases = [
            (json!({"tenant_id": "not-a-uuid"}), "$.tenant_id"),
            (json!({"updated_at": "yesterday"}), "$.updated_at"),
            (
                json!({"security": {"encryption_algorithm": "DES"}}),
                "$.security.encryption_algorithm",
            ),
            (
                json!({"security": {"kms_key_id": "my-key"}}),
                "$.security.kms_key_id",
            ),
            (
                json!({"security": {"allowed_ips": ["10.0.0.0"]}}),
                "$.security.allowed_ips[0]",
            ),
            (
                json!({"replication": {"mode": "eventually"}}),
                "$.replication.mode",
            ),
            (
                json!({"replication": {"regions": ["Mars"]}}),
                "$.replication.regions[0]",
            ),
            (
                json!({"compliance": {"data_residency": ["eu"]}}),
                "$.compliance.data_residency[0]",
            ),
            (
                json!({"backup": {"destinations": [{"bucket": "b"}]}}),
                "$.backup.destinations[0]",
            ),
            (
                json!({"backup": {"frequency_hours": 169}}),
                "$.backup.frequency_hours",
            ),
            (
                json!({"performance": {"query_memory_limit_mb": 255}}),
                "$.performance.query_memory_limit_mb",
            ),
            (
                json!({"performance": {"enable_result_caching": "yes"}}),
                "$.performance.enable_result_caching",
            ),
        ];
        for (doc, path) in cases {
            let v = s.check_config(&doc);
            assert_eq!(v.len(), 1, "{doc}: {v:?}");
            assert_eq!(v[0].path, path, "{doc}: {v:?}");
        }
    }

    #[test]
    fn generic_messages_name_the_field_and_range() {
        let s = schemas();
        let v = s.check_patch(&json!({"security": {"session_timeout_mins": 2}}));
        assert_eq!(
            v[0].message,
            "`security.session_timeout_mins` must be between 5 and 1440"
        );
        let v = s.check_patch(&json!({"performance": {"cache_size_mb": -1}}));
        assert_eq!(
            v[0].message,
            "`performance.cache_size_mb` must be between 0 and 100000"
        );
        let v = s.check_patch(&json!({"performance": {"cache_size_mb": "1"}}));
        assert_eq!(
            v[0].message,
            "`performance.cache_size_mb` must be an integer"
        );
        let v = s.check_patch(&json!([1]));
        assert_eq!(v[0].message, "The body must be a JSON object");
    }

    #[test]
    fn patch_schema_needs_at_least_one_section() {
        let v = schemas().check_patch(&json!({}));
        assert_eq!(
            v,
            [Violation::new(
                "$",
                "The update sets no configuration field"
            )]
        );
    }
}
