//! The Ed-Fi Admin API 2.x endpoints of multi-tenancy, as Ed-Fi answers them:
//! the landing document (`GET /`), the tenants with the server and database of
//! their admin and security databases (`GET /v2/tenants`,
//! `GET /v2/tenants/{tenantName}`). `/connect/*` is `api::connect`; Ed-Fi's
//! answer to a `/v1/` path in multi-tenant mode is tenant traffic's. Where these differ from
//! Ed-Fi, the README's "Compatibility with Ed-Fi Admin API 2.x" says how.

use crate::config::Secret;
use crate::http::{
    Body, Gateway, Param, Problem, Routes, Served, Surface, ValidationProblem, json, json_body,
    methods, mount, problem,
};
use crate::security::auth::Principal;
use crate::tenancy::{Directory, PerDirectory, Tenant};
use axum::extract::{Request, State};
use axum::routing::get;
use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use std::sync::{Arc, LazyLock};
use utoipa::{OpenApi, ToSchema};

/// The API's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(paths(landing, list, one))]
pub struct Doc;

/// The paths under `/v2/tenants`, and their label; errors are RFC 9457
/// problems, as Ed-Fi's.
struct EdFi;

impl Surface for EdFi {
    const ROUTE: &'static str = "edfi";

    fn error(_: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        problem(status, message)
    }
}

/// `GET /` and the tenant endpoints.
pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/",
            methods::<EdFi>(get(|| async {
                crate::http::served(json(StatusCode::OK, LANDING.clone()), EdFi::ROUTE, None)
            })),
        )
        .merge(mount::<EdFi>(
            "/v2/tenants",
            [
                ("/", methods::<EdFi>(get(list_route))),
                ("/{tenantName}", methods::<EdFi>(get(one_route))),
            ],
        ))
}

/// What `GET /` says of the gateway, with Ed-Fi's field names.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Information {
    /// The gateway's version.
    #[schema(example = "0.1.0")]
    version: &'static str,
    /// The build: `TG_BUILD` when the binary was built, else the version.
    #[schema(example = "0.1.0")]
    build: &'static str,
    #[schema(example = "tenant-gateway")]
    application_name: &'static str,
}

/// The landing document, written once.
static LANDING: LazyLock<Bytes> = LazyLock::new(|| {
    let version = env!("CARGO_PKG_VERSION");
    let info = Information {
        version,
        build: option_env!("TG_BUILD").unwrap_or(version),
        application_name: env!("CARGO_PKG_NAME"),
    };
    Bytes::from(serde_json::to_vec(&info).expect("the landing document serializes"))
});

/// The landing document (anonymous).
#[utoipa::path(get, path = "/", tag = "Information", operation_id = "landing", security(()),
    responses((status = 200, description = "The gateway's version and build", body = Information)))]
#[allow(dead_code)] // a document: `routes` serves it
fn landing() {}

/// The server and database a connection string names; `null` for what it
/// does not name, or for a string that is not `key=value;…`. Nothing else of
/// the string (no user name, no password) is read out.
#[derive(Serialize, ToSchema, Default)]
struct HostAndDatabase {
    #[schema(example = "localhost")]
    host: Option<String>,
    #[schema(example = "EdFi_Admin_Tenant1")]
    database: Option<String>,
}

/// A tenant as Ed-Fi lists it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TenantEntry<'a> {
    #[schema(example = "Tenant1")]
    tenant_name: &'a str,
    /// From its `EdFi_Admin` connection string.
    admin_connection_string: HostAndDatabase,
    /// From its `EdFi_Security` connection string.
    security_connection_string: HostAndDatabase,
}

/// The keys that name the server, and the database, in the ADO.NET connection
/// strings of SQL Server and of PostgreSQL (Npgsql): whichever
/// `AppSettings.DatabaseEngine` says, a string is read by both sets.
const HOST_KEYS: [&str; 6] = [
    "host",
    "server",
    "data source",
    "address",
    "addr",
    "network address",
];
const DATABASE_KEYS: [&str; 3] = ["database", "initial catalog", "db"];

fn host_and_database(connection_string: Option<&Secret>) -> HostAndDatabase {
    let Some(pairs) = connection_string.and_then(|cs| {
        cs.expose()
            .parse::<::connection_string::AdoNetString>()
            .ok()
    }) else {
        return HostAndDatabase::default();
    };
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| pairs.get(*k).filter(|v| !v.is_empty()))
            .cloned()
    };
    HostAndDatabase {
        host: first(&HOST_KEYS),
        database: first(&DATABASE_KEYS),
    }
}

/// `tenant`'s connection string `name` (as .NET configuration, the name in
/// any case).
fn connection_string(tenant: &Tenant, name: &str) -> Option<Secret> {
    let mut any_case = None;
    for (n, cs) in tenant.connection_strings.entries() {
        if n == name {
            return Some(cs);
        }
        if any_case.is_none() && n.eq_ignore_ascii_case(name) {
            any_case = Some(cs);
        }
    }
    any_case
}

fn entry(tenant: &Tenant) -> TenantEntry<'_> {
    TenantEntry {
        tenant_name: tenant.name.as_str(),
        admin_connection_string: host_and_database(
            connection_string(tenant, "EdFi_Admin").as_ref(),
        ),
        security_connection_string: host_and_database(
            connection_string(tenant, "EdFi_Security").as_ref(),
        ),
    }
}

/// Which tenants a caller may see.
enum Visible {
    /// Every tenant: the super-user, and tokens when
    /// `TenantGateway.Auth.TokensCrossTenants` (Ed-Fi's rule).
    All,
    /// Only its own: a token bound to its tenant, a tenant's user.
    Own(uuid::Uuid),
}

impl Visible {
    fn sees(&self, tenant: &Tenant) -> bool {
        match self {
            Visible::All => true,
            Visible::Own(id) => *id == tenant.id,
        }
    }
}

/// Checks a tenant request's `Tenant` header (when sent, it must name a
/// tenant, as Ed-Fi checks it before any endpoint) and credentials (any
/// principal: Ed-Fi's endpoints need a token): which tenants the caller sees,
/// or the answer to send.
#[allow(clippy::result_large_err)]
async fn caller(gw: &Gateway, dir: &Directory, req: &Parts) -> Result<Visible, Response<Body>> {
    if let Err(e) = dir.resolver.named(&req.headers, req.uri.path(), dir) {
        return Err(crate::http::unresolved(&gw.metrics, &e));
    }
    match crate::http::authenticate(gw, &req.headers, dir, None).await {
        Ok(Principal::SuperUser) => Ok(Visible::All),
        Ok(Principal::Client(_)) if dir.auth.tokens_cross_tenants => Ok(Visible::All),
        Ok(Principal::Client(claims)) => Ok(Visible::Own(claims.tenant)),
        Ok(Principal::TenantUser { tenant, .. }) => Ok(Visible::Own(tenant)),
        Err(refusal) => {
            gw.metrics.reject(crate::http::refusal_reason(refusal));
            let mut resp = problem(refusal.status(), &refusal.to_string());
            crate::http::refused(&mut resp, refusal);
            Err(resp)
        }
    }
}

/// Every tenant, as Ed-Fi lists them (made once per directory).
fn all_tenants(dir: &Directory) -> Bytes {
    let entries: Vec<TenantEntry<'_>> = dir.iter().map(|t| entry(t)).collect();
    Bytes::from(serde_json::to_vec(&entries).expect("the tenant list serializes"))
}

/// The tenants: each with the server and database of its admin and security
/// databases, never a user name or password.
#[utoipa::path(get, path = "/v2/tenants", tag = "Tenants", operation_id = "edfiListTenants",
    security(("bearerAuth" = []), ("superUser" = [])),
    responses(
        (status = 200, description = "Every tenant (the super-user, or tokens with TenantGateway.Auth.TokensCrossTenants); else the caller's own", body = Vec<TenantEntry>),
        (status = 400, description = "A Tenant header that names no tenant", body = ValidationProblem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad credentials", body = Problem, content_type = "application/problem+json")))]
async fn list(gw: &Gateway, req: Request) -> Response<Body> {
    static ALL: LazyLock<PerDirectory> = LazyLock::new(PerDirectory::default);
    let (req, _) = req.into_parts();
    let dir = gw.runtime.shared().directory.load_full();
    match caller(gw, &dir, &req).await {
        Ok(Visible::All) => json(StatusCode::OK, ALL.of(dir, all_tenants)),
        Ok(Visible::Own(id)) => {
            let entries: Vec<TenantEntry<'_>> =
                dir.by_id(&id).map(|t| entry(t)).into_iter().collect();
            json_body(StatusCode::OK, &entries)
        }
        Err(resp) => resp,
    }
}

async fn list_route(State(gw): State<Arc<Gateway>>, req: Request) -> Response<Body> {
    list(&gw, req).await
}

/// A tenant by name (any case); 404 for a name that is no tenant the caller
/// sees.
#[utoipa::path(get, path = "/v2/tenants/{tenantName}", tag = "Tenants", operation_id = "edfiGetTenant",
    params(("tenantName" = String, Path)),
    security(("bearerAuth" = []), ("superUser" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantEntry),
        (status = 400, description = "A Tenant header that names no tenant", body = ValidationProblem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json")))]
async fn one(gw: &Gateway, name: &str, req: Request) -> Response<Body> {
    let (req, _) = req.into_parts();
    let dir = gw.runtime.shared().directory.load_full();
    let visible = match caller(gw, &dir, &req).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match dir.get(name) {
        // `get` takes ids too: Ed-Fi's path names the tenant.
        Some(t) if t.name.as_str().eq_ignore_ascii_case(name) && visible.sees(t) => Served {
            route: None,
            tenant: Some(t.clone()),
        }
        .onto(json_body(StatusCode::OK, &entry(t))),
        _ => problem(
            StatusCode::NOT_FOUND,
            &format!("Not found: tenant with name {name}"),
        ),
    }
}

async fn one_route(
    State(gw): State<Arc<Gateway>>,
    Param(name, ..): Param<EdFi>,
    req: Request,
) -> Response<Body> {
    one(&gw, &name, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(cs: &str) -> (Option<String>, Option<String>) {
        let hd = host_and_database(Some(&Secret::new(cs.to_owned())));
        (hd.host, hd.database)
    }

    #[test]
    fn only_the_server_and_database_are_read_out() {
        let some = |h: &str, d: &str| (Some(h.to_owned()), Some(d.to_owned()));
        assert_eq!(
            read(
                "Host=db.example; Port=5432; Username=postgres; Password=p; Database=EdFi_Admin_T1;"
            ),
            some("db.example", "EdFi_Admin_T1")
        );
        assert_eq!(
            read(
                "Data Source=tcp:sql.example,1433;Initial Catalog=EdFi_Security;User Id=sa;Password='a;b'"
            ),
            some("tcp:sql.example,1433", "EdFi_Security")
        );
        assert_eq!(
            read("server=(local); DATABASE=EdFi_Admin; Trusted_Connection=True"),
            some("(local)", "EdFi_Admin")
        );
        // Not key=value: nothing, rather than a guess that might be a secret.
        assert_eq!(read("postgres://user:pass@host/db"), (None, None));
        assert_eq!(read("Password=only"), (None, None));
        assert!(host_and_database(None).host.is_none());
        let json = serde_json::to_string(&host_and_database(Some(&Secret::new(
            "Host=h;Username=admin-user;Password=hunter2;Database=d".into(),
        ))))
        .unwrap();
        assert_eq!(json, r#"{"host":"h","database":"d"}"#);
    }
}
