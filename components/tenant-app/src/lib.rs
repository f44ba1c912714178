//! A sample tenant app: one `wasi:http` component (built with spin-sdk) serving
//! every tenant. Each tenant's instance reads that tenant's connection settings
//! from its environment and reports which database they name, never the
//! connection string itself.
//!
//! It reads its settings from environment variables (`wasi:cli/environment`)
//! because that is the one settings interface every host it runs on provides in
//! the same version: the gateway (each request gets the resolved tenant's own),
//! Spin (`spin up -e`, or `environment` in `spin.toml`) and `wasmtime serve`
//! (`-S cli --env`). `wasi:config/store` would be the natural one, but Spin 3.x
//! provides `@0.2.0-draft-2024-09-27` and wasmtime 48 `@0.2.0-rc.1`, and the
//! component model matches no pre-release version to another.
//!
//! Variables: `TENANT_NAME` (`default` when unset), and one per connection string, named after it in
//! upper case with anything outside `[A-Z0-9]` as `_` (`EdFi_Admin` →
//! `EDFI_ADMIN`). `?connection=EdFi_Security` picks another connection string
//! than `EdFi_Admin`.

#[cfg(target_arch = "wasm32")]
mod component;

/// The database a connection string names: the value of its `Database`,
/// `Initial Catalog` or `dbname` key (ADO.NET and libpq key=value forms, keys in
/// any case), or the path of a `postgres://` URL. Nothing else of the string.
pub fn database_name(connection_string: &str) -> Option<String> {
    let cs = connection_string.trim();
    if let Some(rest) = cs
        .strip_prefix("postgres://")
        .or_else(|| cs.strip_prefix("postgresql://"))
    {
        let path = rest.split_once('/')?.1;
        let name = path.split(['?', '#']).next().unwrap_or("");
        return (!name.is_empty()).then(|| name.to_owned());
    }
    // ADO.NET separates pairs with ';' (keys may contain spaces), libpq with
    // whitespace: try the first, then the second.
    let find = |parts: &mut dyn Iterator<Item = &str>| {
        parts
            .filter_map(|part| part.split_once('='))
            .find(|(key, _)| {
                let key = key.trim();
                ["database", "initial catalog", "dbname"]
                    .iter()
                    .any(|k| key.eq_ignore_ascii_case(k))
            })
            .map(|(_, value)| value.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    find(&mut cs.split(';')).or_else(|| find(&mut cs.split_whitespace()))
}

/// The environment variable of a connection string: upper case, anything
/// outside `[A-Z0-9]` replaced by `_`. `None` for a name that would read one of
/// the tenant's own variables (`TENANT_*`) instead of a connection string.
pub fn variable_name(connection_name: &str) -> Option<String> {
    let name: String = connection_name
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!name.starts_with("TENANT_")).then_some(name)
}

/// The first value of `key` in a query string (no percent-decoding: connection
/// names are plain identifiers).
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The answer for a tenant: its name, the connection used and the database it
/// names, or an error message when the connection is not configured.
pub fn report(
    tenant: &str,
    connection: &str,
    connection_string: Option<&str>,
) -> (u16, serde_json::Value) {
    match connection_string {
        Some(cs) => (
            200,
            serde_json::json!({
                "tenant": tenant,
                "connection": connection,
                "database": database_name(cs),
            }),
        ),
        None => (
            404,
            serde_json::json!({
                "error": "Not Found",
                "message": format!("Tenant '{tenant}' has no connection string '{connection}'"),
                "code": 404,
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_from_common_forms() {
        assert_eq!(
            database_name("Server=(local); Database=EdFi_Admin_Tenant1; Integrated Security=True;")
                .as_deref(),
            Some("EdFi_Admin_Tenant1")
        );
        assert_eq!(
            database_name("Data Source=db;Initial Catalog=Sales;User Id=u;Password=p").as_deref(),
            Some("Sales")
        );
        assert_eq!(
            database_name("host=localhost dbname=edfi password=secret").as_deref(),
            Some("edfi")
        );
        assert_eq!(
            database_name("postgres://u:pw@h:5432/tenant_b?sslmode=require").as_deref(),
            Some("tenant_b")
        );
        assert_eq!(database_name("Server=x;Password=y"), None);
    }

    #[test]
    fn variable_names() {
        assert_eq!(variable_name("EdFi_Admin").as_deref(), Some("EDFI_ADMIN"));
        assert_eq!(
            variable_name("Read-Only DB").as_deref(),
            Some("READ_ONLY_DB")
        );
        assert_eq!(variable_name("tenant_name"), None);
    }

    #[test]
    fn report_never_contains_the_connection_string() {
        let cs = "Server=s; Database=D1; Password=hunter2;";
        let (status, body) = report("A", "EdFi_Admin", Some(cs));
        assert_eq!(status, 200);
        let text = body.to_string();
        assert!(text.contains("\"database\":\"D1\""), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("Server=s"),
            "{text}"
        );
        assert_eq!(report("A", "X", None).0, 404);
        assert_eq!(
            query_param("a=1&connection=EdFi_Security", "connection"),
            Some("EdFi_Security")
        );
    }
}
