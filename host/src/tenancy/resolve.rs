//! Tenant resolution for tenant traffic (Ed-Fi Admin API rules, made stricter):
//! the `Tenant` header (any case of the name) names a configured tenant; without
//! it, Swagger UI requests use `SwaggerSettings.DefaultTenant` and single-tenant
//! mode uses its one tenant; otherwise the request is refused. An unknown tenant is
//! an error, never a fall-through to another tenant.

use crate::config::{Settings, TenantName};
use crate::tenancy::{Directory, Tenant};
use http::header::REFERER;
use http::{HeaderMap, HeaderName};
use std::sync::Arc;

/// The routing header.
pub const TENANT: HeaderName = HeaderName::from_static("tenant");

/// Why a request has no tenant. Each is worded for the client, and answered
/// as Ed-Fi answers it: a validation failure of the `Tenant` field
/// (`http::unresolved`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No `Tenant` header where one is needed.
    #[error("Tenant header is missing: name the tenant of the request in a Tenant header")]
    Missing,
    /// The header is not a tenant name: what is wrong with it.
    #[error("Please provide a valid tenant id in the Tenant header: it {0}")]
    Invalid(&'static str),
    /// The header names no configured tenant.
    #[error("Tenant not found with provided tenant id: {0}")]
    Unknown(String),
    /// A Swagger UI request without the header, and
    /// `SwaggerSettings.DefaultTenant` names no configured tenant.
    #[error(
        "Please configure a valid default tenant id: SwaggerSettings.DefaultTenant is '{0}', which is not a configured tenant"
    )]
    UnknownDefault(String),
}

impl ResolveError {
    /// What the refusal counts as in the metrics.
    pub fn rejection(&self) -> crate::telemetry::Rejection {
        use crate::telemetry::Rejection;
        match self {
            ResolveError::Missing => Rejection::TenantMissing,
            ResolveError::Invalid(_) => Rejection::TenantInvalid,
            ResolveError::Unknown(_) | ResolveError::UnknownDefault(_) => Rejection::TenantUnknown,
        }
    }
}

/// The part of the settings resolution needs.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    multi_tenancy: bool,
    swagger_default: Option<TenantName>,
}

impl Resolver {
    /// Takes the rules from the settings.
    pub fn new(settings: &Settings) -> Self {
        Self {
            multi_tenancy: settings.multi_tenancy,
            swagger_default: settings
                .default_tenant
                .clone()
                .filter(|_| settings.swagger_enabled),
        }
    }

    /// Whether the settings are Ed-Fi's multi-tenant mode
    /// (`AppSettings.MultiTenancy`).
    pub fn multi_tenancy(&self) -> bool {
        self.multi_tenancy
    }

    /// Paths served without a tenant: the root, health, token endpoints, discovery.
    pub fn needs_no_tenant(path: &str) -> bool {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        first.is_empty()
            || first.eq_ignore_ascii_case("health")
            || first.eq_ignore_ascii_case("healthz")
            || first.eq_ignore_ascii_case("connect")
            || first == ".well-known"
    }

    /// The tenant a request's `Tenant` header names, if it sends one (which
    /// must then name a tenant, as Ed-Fi checks it before any endpoint).
    pub fn named(
        &self,
        headers: &HeaderMap,
        path: &str,
        dir: &Directory,
    ) -> Result<Option<Arc<Tenant>>, ResolveError> {
        if !headers.contains_key(TENANT) {
            return Ok(None);
        }
        self.resolve(headers, path, dir).map(Some)
    }

    /// Finds the tenant of a request.
    pub fn resolve(
        &self,
        headers: &HeaderMap,
        path: &str,
        dir: &Directory,
    ) -> Result<Arc<Tenant>, ResolveError> {
        let mut values = headers.get_all(TENANT).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(ResolveError::Invalid("is given more than once"));
            }
            let name = value
                .to_str()
                .map_err(|_| ResolveError::Invalid("is not visible ASCII text"))?
                .trim();
            TenantName::check(name).map_err(ResolveError::Invalid)?;
            return dir
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::Unknown(name.to_owned()));
        }
        if let Some(default) = &self.swagger_default
            && is_swagger(headers, path)
        {
            return dir
                .get(default.as_str())
                .cloned()
                .ok_or_else(|| ResolveError::UnknownDefault(default.as_str().to_owned()));
        }
        if !self.multi_tenancy
            && let Some(only) = dir.iter().next()
        {
            return Ok(only.clone());
        }
        Err(ResolveError::Missing)
    }
}

fn contains_swagger(text: &str) -> bool {
    text.as_bytes()
        .windows(7)
        .any(|w| w.eq_ignore_ascii_case(b"swagger"))
}

/// A request made by Swagger UI: its path or its Referer mentions swagger.
fn is_swagger(headers: &HeaderMap, path: &str) -> bool {
    contains_swagger(path)
        || headers
            .get(REFERER)
            .and_then(|r| r.to_str().ok())
            .is_some_and(contains_swagger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use http::HeaderValue;

    fn setup(text: &str) -> (Resolver, Directory, tempfile::TempDir) {
        let settings = Settings::parse(text).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(tmp.path()).unwrap();
        let (dir, _) = Directory::seed(
            &store,
            std::sync::Arc::new(settings.clone()),
            Default::default(),
            "2025-01-01T00:00:00Z",
        )
        .unwrap();
        (Resolver::new(&settings), dir, tmp)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn header_names_the_tenant_in_any_case() {
        let (r, dir, _t) = setup(crate::config::SAMPLE);
        for (h, v) in [
            ("Tenant", "Tenant1"),
            ("tenant", "tenant1"),
            ("TENANT", "TENANT1"),
        ] {
            let t = r.resolve(&headers(&[(h, v)]), "/x", &dir).unwrap();
            assert_eq!(t.name.as_str(), "Tenant1");
        }
        let t = r
            .resolve(&headers(&[("Tenant", "Tenant2")]), "/x", &dir)
            .unwrap();
        assert_eq!(t.name.as_str(), "Tenant2");
    }

    #[test]
    fn missing_invalid_unknown() {
        let (r, dir, _t) = setup(crate::config::SAMPLE);
        assert_eq!(
            r.resolve(&headers(&[]), "/x", &dir).unwrap_err(),
            ResolveError::Missing
        );
        assert!(matches!(
            r.resolve(&headers(&[("Tenant", "bad name!")]), "/x", &dir),
            Err(ResolveError::Invalid(_))
        ));
        assert!(matches!(
            r.resolve(&headers(&[("Tenant", &"a".repeat(51))]), "/x", &dir),
            Err(ResolveError::Invalid(_))
        ));
        assert!(matches!(
            r.resolve(
                &headers(&[("Tenant", "Tenant1"), ("Tenant", "Tenant2")]),
                "/x",
                &dir
            ),
            Err(ResolveError::Invalid(_))
        ));
        assert_eq!(
            r.resolve(&headers(&[("Tenant", "Tenant3")]), "/x", &dir)
                .unwrap_err(),
            ResolveError::Unknown("Tenant3".into())
        );
        // Without the header, no tenant is named; with it, it must name one.
        assert!(r.named(&headers(&[]), "/x", &dir).unwrap().is_none());
        assert_eq!(
            r.named(&headers(&[("Tenant", "Tenant3")]), "/x", &dir)
                .unwrap_err(),
            ResolveError::Unknown("Tenant3".into())
        );
        let named = r.named(&headers(&[("Tenant", "tenant2")]), "/x", &dir);
        assert_eq!(named.unwrap().unwrap().name.as_str(), "Tenant2");
        assert!(
            ResolveError::Missing
                .to_string()
                .starts_with("Tenant header is missing")
        );
        assert_eq!(
            ResolveError::Invalid("may contain only letters").to_string(),
            "Please provide a valid tenant id in the Tenant header: it may contain only letters"
        );
    }

    #[test]
    fn swagger_requests_use_the_default_tenant() {
        let (r, dir, _t) = setup(crate::config::SAMPLE);
        let t = r
            .resolve(&headers(&[]), "/swagger/index.html", &dir)
            .unwrap();
        assert_eq!(t.name.as_str(), "Tenant1");
        let t = r
            .resolve(
                &headers(&[("Referer", "http://localhost:8080/Swagger/index.html")]),
                "/v2/vendors",
                &dir,
            )
            .unwrap();
        assert_eq!(t.name.as_str(), "Tenant1");
        // An explicit header still wins.
        let t = r
            .resolve(
                &headers(&[("Tenant", "Tenant2"), ("Referer", "/swagger")]),
                "/v2/vendors",
                &dir,
            )
            .unwrap();
        assert_eq!(t.name.as_str(), "Tenant2");
        // Swagger disabled: no default.
        let mut off: serde_json::Value = serde_json::from_str(crate::config::SAMPLE).unwrap();
        off["SwaggerSettings"]["EnableSwagger"] = false.into();
        let (r, dir, _t) = setup(&off.to_string());
        assert_eq!(
            r.resolve(&headers(&[]), "/swagger", &dir).unwrap_err(),
            ResolveError::Missing
        );
    }

    #[test]
    fn single_tenant_mode_needs_no_header() {
        let (r, dir, _t) = setup(r#"{"ConnectionStrings":{"EdFi_Admin":"x"}}"#);
        assert_eq!(
            r.resolve(&headers(&[]), "/x", &dir).unwrap().name.as_str(),
            "default"
        );
    }

    #[test]
    fn exempt_paths() {
        for p in [
            "/",
            "/health",
            "/healthz",
            "/connect/token",
            "/.well-known/openid-configuration",
        ] {
            assert!(Resolver::needs_no_tenant(p), "{p}");
        }
        for p in ["/v2/vendors", "/healthcheck-ish/x", "/connected"] {
            assert!(!Resolver::needs_no_tenant(p), "{p}");
        }
    }
}
