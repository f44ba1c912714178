//! Reading the settings: the JSON with its environment overrides and canonical
//! keys (`dotnet.rs`), the Ed-Fi sections, then the `TenantGateway` section, each
//! value checked with its key named on error.

use super::allowed_hosts::AllowedHosts;
use super::dotnet::{SETTINGS_SCHEMA, apply_env, canonical_keys};
use super::file::{GatewaySection, RouteSection};
use super::*;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Case-insensitive lookup of a key in a JSON object, as .NET configuration does.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, SettingsError> {
    value
        .as_object()
        .ok_or_else(|| err(key, "must be a JSON object"))
}

/// .NET configuration reads booleans from JSON booleans or the strings "true"/"false".
fn boolean(value: Option<&Value>, key: &str) -> Result<bool, SettingsError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(err(key, "must be true or false")),
    }
}

fn connection_strings(
    value: Option<&Value>,
    key: &str,
) -> Result<ConnectionStringSet, SettingsError> {
    let Some(value) = value else {
        return Ok(ConnectionStringSet::default());
    };
    object(value, key)?
        .iter()
        .map(|(name, cs)| {
            let cs = cs
                .as_str()
                .ok_or_else(|| err(format!("{key}.{name}"), "must be a string"))?;
            Ok((name.clone(), Secret::new(cs.to_owned())))
        })
        .collect()
}

impl Settings {
    /// Parses settings text with environment overrides, as .NET configuration reads
    /// them: `Section__Key__Sub=value` sets `Section.Key.Sub` (keys case-insensitive).
    /// Only variables whose first segment is a section the gateway reads count
    /// (`AppSettings`, `ConnectionStrings`, `Tenants`, `SwaggerSettings`,
    /// `Authentication`, `TenantGateway`). A value replacing a number or boolean must
    /// parse as one; a new value is a number or boolean when it reads as one, except
    /// under `ConnectionStrings`, which are always strings.
    pub fn parse_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut root: Value =
            serde_json::from_str(text).map_err(|e| err("$", format!("not valid JSON: {e}")))?;
        object(&root, "$")?;
        for (name, value) in vars {
            apply_env(&mut root, &name, value)?;
        }
        canonical_keys(&mut root, &SETTINGS_SCHEMA, "$")?;
        let root = object(&root, "$")?;

        let multi_tenancy = match get(root, "AppSettings") {
            Some(app) => boolean(
                get(object(app, "AppSettings")?, "MultiTenancy"),
                "AppSettings.MultiTenancy",
            )?,
            None => false,
        };

        let gateway: GatewaySection = match get(root, "TenantGateway") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| err("TenantGateway", e.to_string()))?,
            None => GatewaySection::default(),
        };
        let limits = &gateway.limits;
        if limits.max_body_bytes == 0 {
            return Err(err(
                "TenantGateway.Limits.MaxBodyBytes",
                "must be greater than 0",
            ));
        }
        if !(1..=4096).contains(&limits.component_memory_mib) {
            return Err(err(
                "TenantGateway.Limits.ComponentMemoryMib",
                "must be between 1 and 4096",
            ));
        }
        if limits.component_timeout_ms == 0 {
            return Err(err(
                "TenantGateway.Limits.ComponentTimeoutMs",
                "must be greater than 0",
            ));
        }
        for (zero, key) in [
            (
                limits.max_concurrent_component_calls == 0,
                "MaxConcurrentComponentCalls",
            ),
            (limits.outbound_timeout_ms == 0, "OutboundTimeoutMs"),
            (limits.header_read_timeout_ms == 0, "HeaderReadTimeoutMs"),
            (
                limits.upstream_idle_timeout_ms == 0,
                "UpstreamIdleTimeoutMs",
            ),
            (
                limits.max_outbound_response_bytes == 0,
                "MaxOutboundResponseBytes",
            ),
        ] {
            if zero {
                return Err(err(
                    format!("TenantGateway.Limits.{key}"),
                    "must be greater than 0",
                ));
            }
        }

        let mut tenants = Vec::new();
        if multi_tenancy {
            let section = get(root, "Tenants").ok_or_else(|| {
                err(
                    "Tenants",
                    "is required when AppSettings.MultiTenancy is true",
                )
            })?;
            for (name, tenant) in object(section, "Tenants")? {
                let key = format!("Tenants.{name}");
                let parsed =
                    TenantName::parse(name).map_err(|p| err(&key, format!("tenant name {p}")))?;
                let tenant = object(tenant, &key)?;
                let cs_key = format!("{key}.ConnectionStrings");
                tenants.push(TenantSettings {
                    name: parsed,
                    connection_strings: connection_strings(
                        get(tenant, "ConnectionStrings"),
                        &cs_key,
                    )?,
                    tier: Tier::default(),
                    upstream: None,
                    routes: Vec::new(),
                });
            }
            if tenants.is_empty() {
                return Err(err(
                    "Tenants",
                    "must name at least one tenant when AppSettings.MultiTenancy is true",
                ));
            }
        } else {
            let name = gateway
                .single_tenant_name
                .as_deref()
                .unwrap_or(SINGLE_TENANT_NAME);
            let name = TenantName::parse(name)
                .map_err(|p| err("TenantGateway.SingleTenantName", format!("tenant name {p}")))?;
            tenants.push(TenantSettings {
                name,
                connection_strings: connection_strings(
                    get(root, "ConnectionStrings"),
                    "ConnectionStrings",
                )?,
                tier: Tier::default(),
                upstream: None,
                routes: Vec::new(),
            });
        }

        let mut apps = BTreeMap::new();
        for (name, app) in &gateway.apps {
            let key = format!("TenantGateway.Apps.{name}.Component");
            let source = match app.component.strip_prefix("builtin:") {
                Some(b) => AppSource::Builtin(
                    BUILTIN_APPS
                        .into_iter()
                        .find(|known| *known == b)
                        .ok_or_else(|| {
                            err(&key, format!("no built-in app {b} (known: tenant-app)"))
                        })?,
                ),
                None if app.component.is_empty() => return Err(err(&key, "must not be empty")),
                None => AppSource::File(PathBuf::from(&app.component)),
            };
            let allowed = AllowedHosts::parse(&app.allowed_outbound_hosts).map_err(|e| {
                let i = app
                    .allowed_outbound_hosts
                    .iter()
                    .position(|h| *h == e.entry)
                    .unwrap_or(0);
                err(
                    format!("TenantGateway.Apps.{name}.AllowedOutboundHosts[{i}]"),
                    e.to_string(),
                )
            })?;
            apps.insert(
                name.clone(),
                AppSettings {
                    source,
                    allowed_outbound_hosts: Arc::new(allowed),
                },
            );
        }
        let auth = &gateway.auth;
        for (value, key) in [
            (
                auth.password_checks_per_address_per_minute,
                "TenantGateway.Auth.PasswordChecksPerAddressPerMinute",
            ),
            (
                auth.password_checks_per_user_per_minute,
                "TenantGateway.Auth.PasswordChecksPerUserPerMinute",
            ),
            (
                auth.registrations_per_address_per_minute,
                "TenantGateway.Auth.RegistrationsPerAddressPerMinute",
            ),
            (
                auth.max_clients_per_tenant,
                "TenantGateway.Auth.MaxClientsPerTenant",
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if !(1..=86_400).contains(&auth.token_lifetime_seconds) {
            return Err(err(
                "TenantGateway.Auth.TokenLifetimeSeconds",
                "must be between 1 and 86400",
            ));
        }
        if let Some(su) = &auth.super_user {
            if su.name.is_empty() || su.name.contains(':') {
                return Err(err(
                    "TenantGateway.Auth.SuperUser.Name",
                    "must be non-empty and contain no ':'",
                ));
            }
            if !su.password_hash.starts_with("$argon2") || su.password_hash.split('$').count() < 5 {
                return Err(err(
                    "TenantGateway.Auth.SuperUser.PasswordHash",
                    "must be an Argon2 PHC hash ($argon2id$...); make one with `tenant-gateway hash-password`",
                ));
            }
        }
        for (tier, q) in [
            ("Basic", gateway.rate_limits.basic),
            ("Pro", gateway.rate_limits.pro),
            ("Enterprise", gateway.rate_limits.enterprise),
        ] {
            for (class, n) in [
                ("Reads", q.reads),
                ("Updates", q.updates),
                ("Features", q.features),
            ] {
                if n == 0 {
                    return Err(err(
                        format!("TenantGateway.RateLimits.{tier}.{class}"),
                        "must be at least 1 (requests per minute)",
                    ));
                }
            }
        }

        // Each tenant's place by its case-insensitive key (a search of the
        // list per tenant made 10,000 tenants cost 270 ms of parsing).
        let mut seen = HashMap::with_capacity(tenants.len());
        for (i, t) in tenants.iter().enumerate() {
            if let Some(first) = seen.insert(t.name.key(), i) {
                return Err(err(
                    format!("Tenants.{}", t.name),
                    format!(
                        "duplicates tenant {} (tenant names are case-insensitive)",
                        tenants[first].name
                    ),
                ));
            }
        }
        // Tenants naming the same upstream share one parsed copy of it.
        let mut upstreams: HashMap<&str, std::sync::Arc<http::Uri>> = HashMap::new();
        for (name, extra) in &gateway.tenants {
            let key = format!("TenantGateway.Tenants.{name}");
            let t = seen
                .get(&name.to_ascii_lowercase())
                .map(|&i| &mut tenants[i])
                .ok_or_else(|| err(&key, "names no tenant of the settings file"))?;
            t.tier = extra.tier;
            if let Some(up) = &extra.upstream {
                let uri = match upstreams.get(up.as_str()) {
                    Some(uri) => uri.clone(),
                    None => {
                        let uri = std::sync::Arc::new(
                            upstream(up).map_err(|p| err(format!("{key}.Upstream"), p))?,
                        );
                        upstreams.insert(up, uri.clone());
                        uri
                    }
                };
                t.upstream = Some(uri);
            }
            t.routes = routes(&extra.routes, &format!("{key}.Routes"), &apps)?;
            if let Some(i) = t.routes.iter().position(|r| r.target == Target::Upstream)
                && t.upstream.is_none()
            {
                return Err(err(
                    format!("{key}.Routes[{i}].Upstream"),
                    "the tenant has no Upstream",
                ));
            }
        }
        let shared_routes = routes(&gateway.routes, "TenantGateway.Routes", &apps)?;
        let mut new_tenants = NewTenants {
            connection_strings: gateway
                .new_tenants
                .connection_strings
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect(),
            upstream: gateway.new_tenants.upstream.clone(),
            fixed_upstream: None,
        };
        if let Some(template) = &new_tenants.upstream {
            let sample = upstream(&template.replace(TENANT_PLACEHOLDER, "tenant"))
                .map_err(|p| err("TenantGateway.NewTenants.Upstream", p))?;
            if !template.contains(TENANT_PLACEHOLDER) {
                new_tenants.fixed_upstream = Some(std::sync::Arc::new(sample));
            }
        }

        let (swagger_enabled, default_tenant) = match get(root, "SwaggerSettings") {
            None => (false, None),
            Some(sw) => {
                let sw = object(sw, "SwaggerSettings")?;
                let enabled = boolean(get(sw, "EnableSwagger"), "SwaggerSettings.EnableSwagger")?;
                let default = match get(sw, "DefaultTenant") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(name)) if name.is_empty() => None,
                    Some(Value::String(name)) => {
                        let t = tenants
                            .iter()
                            .find(|t| t.name.as_str().eq_ignore_ascii_case(name))
                            .ok_or_else(|| {
                                err(
                                    "SwaggerSettings.DefaultTenant",
                                    format!("names no configured tenant ({name})"),
                                )
                            })?;
                        Some(t.name.clone())
                    }
                    Some(_) => {
                        return Err(err("SwaggerSettings.DefaultTenant", "must be a string"));
                    }
                };
                if enabled && multi_tenancy && default.is_none() {
                    return Err(err(
                        "SwaggerSettings.DefaultTenant",
                        "is required when EnableSwagger and AppSettings.MultiTenancy are true",
                    ));
                }
                (enabled, default)
            }
        };

        let allow_registration = match get(root, "Authentication") {
            Some(a) => boolean(
                get(object(a, "Authentication")?, "AllowRegistration"),
                "Authentication.AllowRegistration",
            )?,
            None => false,
        };

        Ok(Self {
            multi_tenancy,
            tenants,
            listen: gateway.listen,
            admin_listen: gateway.admin_listen,
            data_dir: gateway.data_dir,
            components_dir: gateway.components_dir,
            limits: gateway.limits,
            swagger_enabled,
            default_tenant,
            allow_registration,
            auth: gateway.auth,
            rate_limits: gateway.rate_limits,
            apps,
            routes: shared_routes,
            new_tenants,
            store: gateway.store.parse()?,
            amqp: gateway.amqp.parse()?,
        })
    }
}

/// Checks a list of routes: paths are `/`-prefixes, each names exactly one
/// target, apps exist, no path twice.
fn routes(
    list: &[RouteSection],
    key: &str,
    apps: &BTreeMap<String, AppSettings>,
) -> Result<Vec<Route>, SettingsError> {
    let mut out: Vec<Route> = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let path = r.path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(err(
                format!("{key}.Path"),
                "must be a path starting with '/', without query",
            ));
        }
        let target = match (&r.app, r.upstream) {
            (Some(app), false) => {
                if !apps.contains_key(app) {
                    return Err(err(
                        format!("{key}.App"),
                        format!("names no app of TenantGateway.Apps ({app})"),
                    ));
                }
                Target::App(app.clone())
            }
            (None, true) => Target::Upstream,
            _ => {
                return Err(err(
                    &key,
                    "must have exactly one of App (an app name) or Upstream (true)",
                ));
            }
        };
        if out.iter().any(|o| o.path == path) {
            return Err(err(
                format!("{key}.Path"),
                format!("{path} is routed twice"),
            ));
        }
        out.push(Route {
            path: path.to_owned(),
            target,
        });
    }
    Ok(out)
}

/// An upstream base URL: `http://host[:port][/prefix]`, no query.
pub(super) fn upstream(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme {other} is not supported (use http://)")),
        None => return Err("must be an absolute http:// URL".into()),
    }
    if uri.authority().is_none() {
        return Err("must name a host".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(uri)
}
