//! The tenant configuration API (`GET`/`PUT /api/v1/tenants/{id}/config`,
//! `GET /api/v1/tenants/{id}/features`) as plain Rust over a [`Platform`] trait;
//! the Spin HTTP component in `component.rs` implements the trait with its imports.
#![deny(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod component;
mod time;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tg_document::{Sections, json_text};

pub use time::{now, rfc3339_utc};

/// Key-value bucket holding tenant records, keyed by tenant UUID and by name.
pub const TENANTS_BUCKET: &str = "tenants";
/// Key-value bucket holding each tenant's configuration, keyed by tenant UUID.
pub const CONFIGS_BUCKET: &str = "configs";
/// How often an update is retried when another update to the same tenant wins
/// the compare-and-swap before it gives up with 409.
pub const MAX_UPDATE_ATTEMPTS: usize = 32;

/// A tenant as the gateway publishes it in [`TENANTS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Stable UUID.
    pub id: String,
    /// Name as configured.
    pub name: String,
    /// `Basic`, `Pro` or `Enterprise`.
    pub tier: String,
    /// A disabled tenant's configuration cannot be read or changed.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When the tenant was created (RFC 3339); the `updated_at` of a configuration
    /// that was never changed.
    pub created_at: String,
}

fn yes() -> bool {
    true
}

/// One violation reported by the validator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// JSONPath of the offending value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A validated partial update.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The whole configuration after the update (JSON text).
    pub config: String,
    /// Dotted names of the fields the update set.
    pub updated_fields: Vec<String>,
}

/// One feature as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feature {
    /// Feature name.
    pub name: String,
    /// Switched on for the tenant.
    pub enabled: bool,
    /// Included in the tenant's tier.
    pub available: bool,
    /// What it does.
    pub description: String,
    /// Lowest tier that includes it.
    pub tier_required: String,
}

/// The feature list of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Catalog order.
    pub features: Vec<Feature>,
    /// Features enabled.
    pub total_enabled: u32,
    /// Features available.
    pub total_available: u32,
}

/// A failure of the platform (store or host), not of the request: answered with 500.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault(pub String);

/// What the API needs from where it runs: tenant lookup, a key-value store with
/// compare-and-swap, the validator and the feature gate.
pub trait Platform {
    /// A compare-and-swap handle on one key, taken when it was read.
    type Cas;
    /// Looks a tenant up by UUID or by name.
    fn tenant(&mut self, id_or_name: &str) -> Result<Option<TenantRecord>, Fault>;
    /// Reads a tenant's stored configuration, if it has one.
    fn read_config(&mut self, tenant_id: &str) -> Result<Option<String>, Fault>;
    /// Reads a tenant's stored configuration and returns a handle to replace it.
    fn begin_update(&mut self, tenant_id: &str) -> Result<(Option<String>, Self::Cas), Fault>;
    /// Replaces the configuration read by `begin_update` if nobody changed it since;
    /// `Ok(false)` when somebody did.
    fn commit_update(&mut self, cas: Self::Cas, config: String) -> Result<bool, Fault>;
    /// The configuration of a tenant that never changed anything.
    fn default_config(&mut self) -> String;
    /// Validates an update and applies it to `current` (or the defaults).
    fn apply_patch(
        &mut self,
        current: Option<&str>,
        patch: &str,
    ) -> Result<Outcome, Vec<Violation>>;
    /// Lists the catalog features for a tenant with this configuration.
    fn list_features(&mut self, tenant: &TenantRecord, config: &str) -> Features;
    /// The current time, RFC 3339 UTC.
    fn now(&mut self) -> String;
}

/// An HTTP request as the API sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The whole body.
    pub body: &'a [u8],
}

/// An HTTP response: status, extra headers and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

impl Response {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: json_text(body),
        }
    }

    /// An error in the API's format: `{error, message, code, tenant_id}`, plus
    /// `details` (every violation with its path) when there are any.
    pub fn error(
        status: u16,
        message: &str,
        tenant_id: Option<&str>,
        details: &[Violation],
    ) -> Self {
        let mut body = json!({
            "error": reason(status),
            "message": message,
            "code": status,
            "tenant_id": tenant_id,
        });
        if !details.is_empty() {
            body["details"] = json!(details);
        }
        Self::json(status, &body)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        _ => "Internal Server Error",
    }
}

enum Route<'a> {
    Config(&'a str),
    Features(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/api/v1/tenants/")?;
    let (id, tail) = rest.split_once('/')?;
    if id.is_empty() {
        return None;
    }
    match tail.trim_end_matches('/') {
        "config" => Some(Route::Config(id)),
        "features" => Some(Route::Features(id)),
        _ => None,
    }
}

/// Serves one request.
pub fn handle<P: Platform>(platform: &mut P, req: Request<'_>) -> Response {
    let Some(route) = route(req.path) else {
        return Response::error(404, &format!("No endpoint at {}", req.path), None, &[]);
    };
    let (id, allowed) = match route {
        Route::Config(id) => (id, "GET, PUT"),
        Route::Features(id) => (id, "GET"),
    };
    let result = match (route, req.method) {
        (Route::Config(_), "GET") => with_tenant(platform, id, get_config),
        (Route::Config(_), "PUT") => {
            if let Some(ct) = req.content_type
                && !is_json(ct)
            {
                return Response::error(
                    415,
                    "Content-Type must be application/json",
                    Some(id),
                    &[],
                );
            }
            with_tenant(platform, id, |p, t| put_config(p, t, req.body))
        }
        (Route::Features(_), "GET") => with_tenant(platform, id, get_features),
        _ => {
            let mut r = Response::error(
                405,
                &format!("Method {} is not allowed here", req.method),
                None,
                &[],
            );
            r.headers.push(("allow", allowed.to_owned()));
            return r;
        }
    };
    result.unwrap_or_else(|Fault(e)| {
        eprintln!("config-api: platform failure: {e}");
        Response::error(500, "Internal server error", Some(id), &[])
    })
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn with_tenant<P: Platform>(
    platform: &mut P,
    id: &str,
    then: impl FnOnce(&mut P, &TenantRecord) -> Result<Response, Fault>,
) -> Result<Response, Fault> {
    match platform.tenant(id)? {
        None => Ok(Response::error(
            404,
            &format!("Tenant '{id}' not found"),
            Some(id),
            &[],
        )),
        Some(t) if !t.enabled => Ok(Response::error(
            403,
            &format!("Tenant '{}' is disabled", t.name),
            Some(&t.id),
            &[],
        )),
        Some(t) => then(platform, &t),
    }
}

/// The document a GET returns: `tenant_id`, the sections, `updated_at`.
fn config_document<P: Platform>(platform: &mut P, tenant: &TenantRecord) -> Result<String, Fault> {
    let stored = platform.read_config(&tenant.id)?;
    let (text, fallback_time) = match stored {
        Some(text) => (text, None),
        None => (platform.default_config(), Some(tenant.created_at.as_str())),
    };
    let config = Document::read(&tenant.id, &text, fallback_time).map_err(|e| {
        Fault(format!(
            "stored configuration of {} is unreadable: {e}",
            tenant.id
        ))
    })?;
    Ok(json_text(&config))
}

/// A configuration document as the API answers and stores it: `tenant_id`
/// first, the sections in their order (carried as the text they were read as,
/// see [`tg_document`]), `updated_at` last.
struct Document<'a> {
    tenant_id: &'a str,
    sections: Sections<'a>,
    updated_at: Time<'a>,
}

/// A document's `updated_at`: the time given, else the one it had, else null.
enum Time<'a> {
    Given(&'a str),
    Stored(&'a RawValue),
    None,
}

impl<'a> Document<'a> {
    /// Reads the object `text` as the document of `tenant_id`; its own
    /// `tenant_id` is replaced, and its `updated_at` by `updated_at` when given.
    fn read(
        tenant_id: &'a str,
        text: &'a str,
        updated_at: Option<&'a str>,
    ) -> serde_json::Result<Self> {
        let sections = Sections::read(text)?;
        let updated_at = match (updated_at, sections.updated_at) {
            (Some(time), _) => Time::Given(time),
            (None, Some(time)) => Time::Stored(time),
            (None, None) => Time::None,
        };
        Ok(Self {
            tenant_id,
            sections,
            updated_at,
        })
    }
}

impl Serialize for Document<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let members = &self.sections.members;
        let mut map = s.serialize_map(Some(members.len() + 2))?;
        map.serialize_entry("tenant_id", self.tenant_id)?;
        for (name, value) in members {
            map.serialize_entry(name.as_ref(), value.as_ref())?;
        }
        match self.updated_at {
            Time::Given(time) => map.serialize_entry("updated_at", time)?,
            Time::Stored(time) => map.serialize_entry("updated_at", time)?,
            Time::None => map.serialize_entry("updated_at", &())?,
        }
        map.end()
    }
}

fn get_config<P: Platform>(platform: &mut P, tenant: &TenantRecord) -> Result<Response, Fault> {
    Ok(Response {
        status: 200,
        headers: Vec::new(),
        body: config_document(platform, tenant)?,
    })
}

fn put_config<P: Platform>(
    platform: &mut P,
    tenant: &TenantRecord,
    body: &[u8],
) -> Result<Response, Fault> {
    let Ok(patch) = std::str::from_utf8(body) else {
        return Ok(Response::error(
            400,
            "Request body is not UTF-8 text",
            Some(&tenant.id),
            &[],
        ));
    };
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let (current, cas) = platform.begin_update(&tenant.id)?;
        let outcome = match platform.apply_patch(current.as_deref(), patch) {
            Ok(o) => o,
            Err(violations) => {
                let message: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
                return Ok(Response::error(
                    400,
                    &message.join("; "),
                    Some(&tenant.id),
                    &violations,
                ));
            }
        };
        let now = platform.now();
        let stored = Document::read(&tenant.id, &outcome.config, Some(&now))
            .map_err(|e| Fault(format!("validator returned unreadable configuration: {e}")))?;
        if platform.commit_update(cas, json_text(&stored))? {
            let n = outcome.updated_fields.len();
            return Ok(Response::json(
                200,
                &json!({
                    "tenant_id": tenant.id,
                    "message": format!("Successfully updated {n} configuration field(s)"),
                    "updated_fields": outcome.updated_fields,
                    "updated_at": now,
                }),
            ));
        }
    }
    Ok(Response::error(
        409,
        "The configuration kept changing concurrently; retry the update",
        Some(&tenant.id),
        &[],
    ))
}

fn get_features<P: Platform>(platform: &mut P, tenant: &TenantRecord) -> Result<Response, Fault> {
    let config = config_document(platform, tenant)?;
    let list = platform.list_features(tenant, &config);
    Ok(Response::json(
        200,
        &json!({
            "tenant_id": tenant.id,
            "features": list.features,
            "total_enabled": list.total_enabled,
            "total_available": list.total_available,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An in-memory platform wired to the real validator and feature-gate logic,
    /// used to test routing and response shapes natively; the gateway's
    /// end-to-end tests cover the same paths with the real components and store.
    #[derive(Default)]
    struct Memory {
        configs: HashMap<String, (u64, String)>,
        /// Simulates a competing writer: bump the version this many times on commit.
        steal: usize,
    }

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    impl Platform for Memory {
        type Cas = (String, u64);
        fn tenant(&mut self, id: &str) -> Result<Option<TenantRecord>, Fault> {
            Ok(
                (id == ID || id.eq_ignore_ascii_case("acme")).then(|| TenantRecord {
                    id: ID.into(),
                    name: "acme".into(),
                    tier: "Enterprise".into(),
                    enabled: true,
                    created_at: "2025-01-01T00:00:00Z".into(),
                }),
            )
        }
        fn read_config(&mut self, id: &str) -> Result<Option<String>, Fault> {
            Ok(self.configs.get(id).map(|(_, c)| c.clone()))
        }
        fn begin_update(&mut self, id: &str) -> Result<(Option<String>, Self::Cas), Fault> {
            let (v, c) = self
                .configs
                .get(id)
                .cloned()
                .map_or((0, None), |(v, c)| (v, Some(c)));
            Ok((c, (id.to_owned(), v)))
        }
        fn commit_update(&mut self, (id, v): Self::Cas, config: String) -> Result<bool, Fault> {
            if self.steal > 0 {
                self.steal -= 1;
                let defaults = self.default_config();
                let e = self.configs.entry(id.clone()).or_insert((0, defaults));
                e.0 += 1;
                return Ok(false);
            }
            let cur = self.configs.get(&id).map_or(0, |(v, _)| *v);
            if cur != v {
                return Ok(false);
            }
            self.configs.insert(id, (v + 1, config));
            Ok(true)
        }
        fn default_config(&mut self) -> String {
            tg_validator::shared().default_config().to_string()
        }
        fn apply_patch(
            &mut self,
            current: Option<&str>,
            patch: &str,
        ) -> Result<Outcome, Vec<Violation>> {
            tg_validator::shared()
                .apply_patch(current, patch)
                .map(|o| Outcome {
                    config: o.config,
                    updated_fields: o.updated_fields,
                })
                .map_err(|v| {
                    v.into_iter()
                        .map(|v| Violation {
                            path: v.path,
                            message: v.message,
                        })
                        .collect()
                })
        }
        fn list_features(&mut self, _t: &TenantRecord, config: &str) -> Features {
            let l = tg_feature_gate::list_features(
                tg_feature_gate::Tier::Enterprise,
                tg_feature_gate::Switches::read(config),
            );
            Features {
                features: l
                    .features
                    .into_iter()
                    .map(|f| Feature {
                        name: f.name.into(),
                        enabled: f.enabled,
                        available: f.available,
                        description: f.description.into(),
                        tier_required: f.tier_required.as_str().into(),
                    })
                    .collect(),
                total_enabled: l.total_enabled,
                total_available: l.total_available,
            }
        }
        fn now(&mut self) -> String {
            "2025-12-09T10:35:00Z".into()
        }
    }

    fn call(p: &mut Memory, method: &str, path: &str, body: &str) -> (u16, Value) {
        let r = handle(
            p,
            Request {
                method,
                path,
                content_type: Some("application/json"),
                body: body.as_bytes(),
            },
        );
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    #[test]
    fn get_returns_defaults_with_tenant_and_creation_time() {
        let (s, b) = call(
            &mut Memory::default(),
            "GET",
            "/api/v1/tenants/ACME/config",
            "",
        );
        assert_eq!(s, 200);
        assert_eq!(b["tenant_id"], ID);
        assert_eq!(b["updated_at"], "2025-01-01T00:00:00Z");
        assert_eq!(b["performance"]["cache_size_mb"], 1024);
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().unwrap().as_str(), "tenant_id");
        assert_eq!(keys.last().unwrap().as_str(), "updated_at");
    }

    #[test]
    fn put_then_get() {
        let mut p = Memory::default();
        let (s, b) = call(
            &mut p,
            "PUT",
            &format!("/api/v1/tenants/{ID}/config"),
            r#"{"performance":{"cache_size_mb":2048,"max_parallel_workers":16}}"#,
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["message"],
            "Successfully updated 2 configuration field(s)"
        );
        assert_eq!(b["updated_at"], "2025-12-09T10:35:00Z");
        let (_, g) = call(&mut p, "GET", "/api/v1/tenants/acme/config", "");
        assert_eq!(g["performance"]["max_parallel_workers"], 16);
        assert_eq!(g["updated_at"], "2025-12-09T10:35:00Z");
    }

    #[test]
    fn rejected_put_writes_nothing_and_uses_error_format() {
        let mut p = Memory::default();
        let (s, b) = call(
            &mut p,
            "PUT",
            "/api/v1/tenants/acme/config",
            r#"{"performance":{"cache_size_mb":200000}}"#,
        );
        assert_eq!(s, 400);
        assert_eq!(b["error"], "Bad Request");
        assert_eq!(b["message"], "Cache size exceeds maximum (100 GB)");
        assert_eq!(b["code"], 400);
        assert_eq!(b["tenant_id"], ID);
        assert_eq!(b["details"][0]["path"], "$.performance.cache_size_mb");
        assert!(p.configs.is_empty());
    }

    #[test]
    fn lost_races_are_retried_then_give_409() {
        let mut p = Memory {
            steal: 3,
            ..Memory::default()
        };
        let (s, _) = call(
            &mut p,
            "PUT",
            "/api/v1/tenants/acme/config",
            r#"{"security":{"require_mfa":true}}"#,
        );
        assert_eq!(s, 200);
        let mut p = Memory {
            steal: MAX_UPDATE_ATTEMPTS,
            ..Memory::default()
        };
        let (s, b) = call(
            &mut p,
            "PUT",
            "/api/v1/tenants/acme/config",
            r#"{"security":{"require_mfa":true}}"#,
        );
        assert_eq!((s, b["code"].clone()), (409, json!(409)));
    }

    #[test]
    fn unknown_tenant_route_and_method() {
        let mut p = Memory::default();
        assert_eq!(
            call(&mut p, "GET", "/api/v1/tenants/nobody/config", "").0,
            404
        );
        assert_eq!(call(&mut p, "GET", "/api/v1/tenants/acme/other", "").0, 404);
        let r = handle(
            &mut p,
            Request {
                method: "DELETE",
                path: "/api/v1/tenants/acme/config",
                content_type: None,
                body: b"",
            },
        );
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, [("allow", "GET, PUT".to_owned())]);
        let r = handle(
            &mut p,
            Request {
                method: "PUT",
                path: "/api/v1/tenants/acme/config",
                content_type: Some("text/plain"),
                body: b"{}",
            },
        );
        assert_eq!(r.status, 415);
    }

    #[test]
    fn features_use_stored_config() {
        let mut p = Memory::default();
        let (_, b) = call(&mut p, "GET", "/api/v1/tenants/acme/features", "");
        assert_eq!(
            (b["total_enabled"].clone(), b["total_available"].clone()),
            (json!(12), json!(18))
        );
        call(
            &mut p,
            "PUT",
            "/api/v1/tenants/acme/config",
            r#"{"security":{"require_mfa":true}}"#,
        );
        let (_, b) = call(&mut p, "GET", "/api/v1/tenants/acme/features", "");
        assert_eq!(b["total_enabled"], 13);
    }

    /// A document's sections are carried as their text, and it still reads as
    /// the parsed document did: `tenant_id` first and replaced, `updated_at`
    /// last (given, else stored, else null), a name written with escapes read
    /// as the name, a member named twice in its first place with its last value.
    #[test]
    fn documents_keep_their_sections_text_and_order() {
        let text = r#"{"updated_at":"t0","b":{"x":[1,2.5,"\u00e9"]},"tenant_id":"other",
            "\u0061":true,"b":{"y":null},"c":1e3}"#;
        let doc = Document::read(ID, text, None).unwrap();
        let written = json_text(&doc);
        assert_eq!(
            written,
            format!(
                r#"{{"tenant_id":"{ID}","b":{{"y":null}},"a":true,"c":1e3,"updated_at":"t0"}}"#
            )
        );
        let parsed: Value = serde_json::from_str(&written).unwrap();
        let keys: Vec<&str> = parsed
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["tenant_id", "b", "a", "c", "updated_at"]);

        let given = json_text(&Document::read(ID, text, Some("t1")).unwrap());
        assert!(given.ends_with(r#","updated_at":"t1"}"#), "{given}");
        let none = json_text(&Document::read(ID, r#"{"s":{}}"#, None).unwrap());
        assert_eq!(
            none,
            format!(r#"{{"tenant_id":"{ID}","s":{{}},"updated_at":null}}"#)
        );

        for bad in ["[1]", "\"x\"", r#"{"a":}"#, r#"{"a":1"#, ""] {
            assert!(Document::read(ID, bad, None).is_err(), "{bad}");
        }
    }
}
