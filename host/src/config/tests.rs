use super::*;
use serde_json::Value;

fn with_gateway(gateway: &str) -> Result<Settings, SettingsError> {
    Settings::parse(&format!(
        r#"{{"AppSettings":{{"MultiTenancy":true}},"Tenants":{{"A":{{}},"B":{{}}}},"TenantGateway":{gateway}}}"#
    ))
}

#[test]
fn routes_apps_auth_and_limits_are_checked_naming_the_key() {
    let ok = with_gateway(
        r#"{"Apps":{"info":{"Component":"builtin:tenant-app"}},"Routes":[{"Path":"/info/","App":"info"}],
            "Tenants":{"a":{"Upstream":"http://127.0.0.1:1","Routes":[{"Path":"/legacy","Upstream":true}]}},
            "RateLimits":{"Pro":{"Updates":3}}}"#,
    )
    .unwrap();
    assert_eq!(ok.routes[0].path, "/info");
    assert_eq!(ok.tenants[0].routes[0].target, Target::Upstream);
    assert_eq!(ok.rate_limits.pro.updates, 3);
    assert_eq!(ok.rate_limits.pro.reads, 100);
    assert!(ok.auth.require_token && !ok.auth.tokens_cross_tenants);
    assert!(ok.routes[0].matches("/info") && ok.routes[0].matches("/info/x"));
    assert!(!ok.routes[0].matches("/information"));

    for (gateway, key) in [
        (
            r#"{"Routes":[{"Path":"/x","App":"nope"}]}"#,
            "TenantGateway.Routes[0].App",
        ),
        (
            r#"{"Routes":[{"Path":"x","Upstream":true}]}"#,
            "TenantGateway.Routes[0].Path",
        ),
        (
            r#"{"Apps":{"i":{"Component":"builtin:i"}},"Routes":[]}"#,
            "TenantGateway.Apps.i.Component",
        ),
        (
            r#"{"Tenants":{"B":{"Routes":[{"Path":"/l","Upstream":true}]}}}"#,
            "TenantGateway.Tenants.B.Routes[0].Upstream",
        ),
        (
            r#"{"Auth":{"SuperUser":{"Name":"admin","PasswordHash":"plain"}}}"#,
            "TenantGateway.Auth.SuperUser.PasswordHash",
        ),
        (
            r#"{"Auth":{"TokenLifetimeSeconds":0}}"#,
            "TenantGateway.Auth.TokenLifetimeSeconds",
        ),
        (
            r#"{"RateLimits":{"Basic":{"Reads":0}}}"#,
            "TenantGateway.RateLimits.Basic.Reads",
        ),
    ] {
        let e = with_gateway(gateway).unwrap_err();
        assert_eq!(e.key, key, "{gateway}: {e}");
    }
}

/// The settings schema in schemas/ accepts the sample and rejects what the
/// parser rejects.
#[test]
fn settings_schema_matches_the_parser() {
    let schema: Value = serde_json::from_str(include_str!(
        "../../../schemas/gateway-settings.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sample)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = sample.clone();
    bad["TenantGateway"]["Bogus"] = 1.into();
    assert!(!validator.is_valid(&bad));
    assert!(Settings::parse(&bad.to_string()).is_err());
    let mut bad = sample.clone();
    bad["TenantGateway"]["Routes"] = serde_json::json!([{"Path": "/x"}]);
    assert!(!validator.is_valid(&bad));
    assert!(Settings::parse(&bad.to_string()).is_err());
    // The store: both engines, and what each refuses.
    for (store, ok) in [
        (serde_json::json!({"Engine": "Sqlite"}), true),
        (
            serde_json::json!({"Engine": "PostgreSql", "ConnectionString": "host=db user=gw"}),
            true,
        ),
        (serde_json::json!({"Engine": "PostgreSql"}), false),
        (
            serde_json::json!({"Engine": "Sqlite", "ConnectionString": "host=db"}),
            false,
        ),
        (serde_json::json!({"Engine": "Oracle"}), false),
        (
            serde_json::json!({"Engine": "PostgreSql", "ConnectionString": "host=db", "RootCertificate": "/etc/ca.pem"}),
            true,
        ),
        (
            serde_json::json!({"Engine": "Sqlite", "RootCertificate": "/etc/ca.pem"}),
            false,
        ),
    ] {
        let mut doc = sample.clone();
        doc["TenantGateway"]["Store"] = store.clone();
        assert_eq!(validator.is_valid(&doc), ok, "{store}");
        let parsed = Settings::parse(&doc.to_string());
        assert_eq!(parsed.is_ok(), ok, "{store}: {parsed:?}");
    }
}

#[test]
fn the_store_connection_string_is_a_secret() {
    let s = Settings::parse(
        r#"{"TenantGateway":{"Store":{"Engine":"postgresql","ConnectionString":"postgresql://gw:hunter2@db/tenants"}}}"#,
    )
    .unwrap();
    let StoreSettings::Postgres { connection, .. } = &s.store else {
        panic!("{:?}", s.store);
    };
    assert_eq!(connection.expose(), "postgresql://gw:hunter2@db/tenants");
    assert!(!format!("{s:?}").contains("hunter2"));
    let e = Settings::parse(
        r#"{"TenantGateway":{"Store":{"Engine":"PostgreSql","ConnectionString":"host=db password=hunter2 port=x"}}}"#,
    )
    .unwrap_err();
    assert_eq!(e.key, "TenantGateway.Store.ConnectionString");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert_eq!(Settings::parse("{}").unwrap().store, StoreSettings::Sqlite);
}

#[test]
fn sample_parses_with_two_tenants() {
    let s = Settings::parse(SAMPLE).unwrap();
    assert!(s.multi_tenancy);
    assert_eq!(s.tenants.len(), 2);
    assert!(s.tenants.iter().all(|t| !t.connection_strings.is_empty()));
}

#[test]
fn single_tenant_mode_is_the_default() {
    let s =
        Settings::parse(r#"{"ConnectionStrings":{"EdFi_Admin":"Server=x;Database=A"}}"#).unwrap();
    assert!(!s.multi_tenancy);
    assert_eq!(s.tenants.len(), 1);
    assert_eq!(s.tenants[0].name.as_str(), SINGLE_TENANT_NAME);
    assert_eq!(
        s.tenants[0]
            .connection_strings
            .get("EdFi_Admin")
            .unwrap()
            .expose(),
        "Server=x;Database=A"
    );
}

#[test]
fn keys_are_case_insensitive_and_unknown_keys_tolerated() {
    let s = Settings::parse(
        r#"{"appsettings":{"multitenancy":"True","Other":1},"Logging":{},"tenants":{"A":{"connectionstrings":{}}}}"#,
    )
    .unwrap();
    assert!(s.multi_tenancy);
    assert_eq!(s.tenants[0].name.as_str(), "A");
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (r#"{"AppSettings":{"MultiTenancy":true}}"#, "Tenants"),
        (
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"bad name":{}}}"#,
            "Tenants.bad name",
        ),
        (
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{},"A":{}}}"#,
            "Tenants.A",
        ),
        (
            r#"{"AppSettings":{"MultiTenancy":1}}"#,
            "AppSettings.MultiTenancy",
        ),
        (
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{"ConnectionStrings":{"x":1}}}}"#,
            "Tenants.a.ConnectionStrings.x",
        ),
        (r#"{"TenantGateway":{"Nope":1}}"#, "TenantGateway"),
        (
            r#"{"TenantGateway":{"Tenants":{"ghost":{}}}}"#,
            "TenantGateway.Tenants.ghost",
        ),
        (
            r#"{"TenantGateway":{"Limits":{"MaxBodyBytes":0}}}"#,
            "TenantGateway.Limits.MaxBodyBytes",
        ),
        (
            r#"{"TenantGateway":{"Tenants":{"default":{"Upstream":"ftp://x"}}}}"#,
            "TenantGateway.Tenants.default.Upstream",
        ),
        (
            r#"{"TenantGateway":{"Tenants":{"default":{"Upstream":"/relative"}}}}"#,
            "TenantGateway.Tenants.default.Upstream",
        ),
        (
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}},"SwaggerSettings":{"EnableSwagger":true}}"#,
            "SwaggerSettings.DefaultTenant",
        ),
        (
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}},"SwaggerSettings":{"EnableSwagger":true,"DefaultTenant":"b"}}"#,
            "SwaggerSettings.DefaultTenant",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(Settings::parse(text).unwrap_err().key, key, "{text}");
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_overrides_like_dotnet_configuration() {
    let s = Settings::parse_with_env(
        SAMPLE,
        env(&[
            ("TENANTGATEWAY__LIMITS__MAXBODYBYTES", "1000"),
            ("Tenants__Tenant3__ConnectionStrings__EdFi_Admin", "12345"),
            ("TenantGateway__Tenants__Tenant3__Tier", "Pro"),
            ("SwaggerSettings__DefaultTenant", "Tenant2"),
            ("PATH", "/usr/bin"),
            ("SOME__OTHER__THING", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(s.limits.max_body_bytes, 1000);
    let t3 = s
        .tenants
        .iter()
        .find(|t| t.name.as_str() == "Tenant3")
        .unwrap();
    assert_eq!(
        t3.connection_strings.get("EdFi_Admin").unwrap().expose(),
        "12345"
    );
    assert_eq!(t3.tier, Tier::Pro);
    assert_eq!(s.default_tenant.unwrap().as_str(), "Tenant2");
    let e = Settings::parse_with_env(
        SAMPLE,
        env(&[("TenantGateway__Limits__MaxBodyBytes", "lots")]),
    )
    .unwrap_err();
    assert_eq!(e.key, "TenantGateway.Limits.MaxBodyBytes");
    let e = Settings::parse_with_env(SAMPLE, env(&[("AppSettings__MultiTenancy", "maybe")]))
        .unwrap_err();
    assert_eq!(e.key, "AppSettings.MultiTenancy");
    let single = Settings::parse_with_env(
        r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}}}"#,
        env(&[("AppSettings__MultiTenancy", "false")]),
    )
    .unwrap();
    assert!(!single.multi_tenancy);
    assert_eq!(single.tenants[0].name.as_str(), SINGLE_TENANT_NAME);
}

/// Keys match in any case, in the file and from the environment, as .NET
/// configuration's do; user-chosen names keep their spelling. (Before:
/// `TENANTGATEWAY__STORE__ENGINE` failed with "unknown field STORE" when the
/// file had no `Store` section.)
#[test]
fn keys_match_in_any_case() {
    let text = r#"{"appsettings":{"multitenancy":true},"TENANTS":{"Acme":{}},
        "tenantgateway":{"limits":{"maxbodybytes":1000},"apps":{"MyApp":{"COMPONENT":"builtin:tenant-app"}},
        "routes":[{"path":"/x","APP":"MyApp"}]}}"#;
    let s = Settings::parse_with_env(
        text,
        env(&[
            ("TENANTGATEWAY__STORE__ENGINE", "PostgreSql"),
            ("tenantgateway__store__connectionstring", "host=db user=gw"),
            ("TenantGateway__Tenants__Acme__TIER", "Pro"),
        ]),
    )
    .unwrap();
    assert!(s.multi_tenancy);
    assert_eq!(s.limits.max_body_bytes, 1000);
    assert!(
        matches!(s.store, StoreSettings::Postgres { .. }),
        "{:?}",
        s.store
    );
    assert!(s.apps.contains_key("MyApp"));
    assert_eq!(s.tenants[0].name.as_str(), "Acme");
    assert_eq!(s.tenants[0].tier, Tier::Pro);
    let twice = r#"{"TenantGateway":{"Limits":{"MaxBodyBytes":1},"limits":{"MaxBodyBytes":2}}}"#;
    let e = Settings::parse(twice).unwrap_err();
    assert!(e.to_string().contains("differ only in case"), "{e}");
}

#[test]
fn tenant_names_that_read_as_uuids_are_refused() {
    for name in [
        "6f1c2b9e-8a4d-5e3f-9b2a-1c0d3e4f5a6b",
        "6F1C2B9E-8A4D-5E3F-9B2A-1C0D3E4F5A6B",
        "6f1c2b9e8a4d5e3f9b2a1c0d3e4f5a6b",
    ] {
        assert!(
            TenantName::parse(name).unwrap_err().contains("UUID"),
            "{name}"
        );
    }
    assert!(TenantName::parse("6f1c2b9e-8a4d-5e3f-9b2a-1c0d3e4f5a6").is_ok());
    assert!(TenantName::parse("tenant-6f1c2b9e").is_ok());
    let text = r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"00000000-0000-0000-0000-000000000001":{}}}"#;
    let e = Settings::parse(text).unwrap_err();
    assert!(e.to_string().contains("UUID"), "{e}");
}

#[test]
fn new_tenants_are_connected_by_template() {
    let s = Settings::parse(SAMPLE).unwrap();
    let name = TenantName::parse("Acme").unwrap();
    let cs = s.new_tenants.connection_strings(&name);
    assert!(
        cs.get("EdFi_Admin")
            .unwrap()
            .expose()
            .contains("Database=EdFi_Admin_Acme;"),
        "{:?}",
        cs.get("EdFi_Admin").unwrap().expose()
    );
    assert_eq!(s.new_tenants.upstream(&name), None);
    let text = r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}},
        "TenantGateway":{"NewTenants":{"Upstream":"http://10.0.0.5:8080/{tenant}/api"}}}"#;
    let s = Settings::parse(text).unwrap();
    assert_eq!(
        s.new_tenants.upstream(&name).unwrap().to_string(),
        "http://10.0.0.5:8080/Acme/api"
    );
    assert!(s.new_tenants.connection_strings(&name).is_empty());
    let e = Settings::parse(&text.replace("http://10", "ftp://10")).unwrap_err();
    assert_eq!(e.key, "TenantGateway.NewTenants.Upstream");
    // A template that names no tenant is one upstream, shared.
    let s = Settings::parse(&text.replace("/{tenant}/api", "/api")).unwrap();
    let other = TenantName::parse("Other").unwrap();
    let (a, b) = (
        s.new_tenants.upstream(&name).unwrap(),
        s.new_tenants.upstream(&other).unwrap(),
    );
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(a.to_string(), "http://10.0.0.5:8080/api");
}

#[test]
fn secrets_do_not_print() {
    let s = Settings::parse(SAMPLE).unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("Database="), "{shown}");
}

#[test]
fn the_amqp_listener_is_off_unless_listen_is_set() {
    assert_eq!(with_gateway("{}").unwrap().amqp, None);
    let plain = with_gateway(r#"{"Amqp":{"Listen":"127.0.0.1:5672"}}"#).unwrap();
    assert_eq!(
        plain.amqp,
        Some(AmqpSettings {
            listen: "127.0.0.1:5672".parse().unwrap(),
            tls: None
        })
    );
    let tls = with_gateway(
        r#"{"Amqp":{"Listen":"127.0.0.1:5671","CertificateFile":"c.pem","KeyFile":"k.pem"}}"#,
    )
    .unwrap();
    assert_eq!(
        tls.amqp.unwrap().tls,
        Some(AmqpTls {
            certificate: "c.pem".into(),
            key: "k.pem".into(),
            client_ca: None,
        })
    );
    let external = with_gateway(
        r#"{"Amqp":{"Listen":"127.0.0.1:5671","CertificateFile":"c.pem","KeyFile":"k.pem","ClientCaFile":"ca.pem"}}"#,
    )
    .unwrap();
    assert_eq!(
        external.amqp.unwrap().tls.unwrap().client_ca,
        Some("ca.pem".into())
    );
    for (section, key) in [
        (
            r#"{"Listen":"127.0.0.1:5671","CertificateFile":"c.pem"}"#,
            "TenantGateway.Amqp.KeyFile",
        ),
        (
            r#"{"Listen":"127.0.0.1:5671","KeyFile":"k.pem"}"#,
            "TenantGateway.Amqp.CertificateFile",
        ),
        (
            r#"{"CertificateFile":"c.pem","KeyFile":"k.pem"}"#,
            "TenantGateway.Amqp.Listen",
        ),
        (
            r#"{"Listen":"127.0.0.1:5672","ClientCaFile":"ca.pem"}"#,
            "TenantGateway.Amqp.ClientCaFile",
        ),
    ] {
        let e = with_gateway(&format!(r#"{{"Amqp":{section}}}"#)).unwrap_err();
        assert_eq!(e.key, key, "{section}");
    }
    assert!(with_gateway(r#"{"Amqp":{"Port":5672}}"#).is_err());
}

/// A tenant's connection strings keep a map's rules in their compact form:
/// found by exact name, listed in name order, a later value of a name
/// replacing an earlier one.
#[test]
fn connection_string_sets_read_like_maps() {
    let set: ConnectionStringSet = [
        ("EdFi_Security", "security"),
        ("EdFi_Admin", "first"),
        ("EdFi_Ods", "ods"),
        ("EdFi_Admin", "admin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Secret::new(v.to_owned())))
    .collect();
    let entries = set.entries();
    let listed: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (&**k, v.expose())).collect();
    assert_eq!(
        listed,
        [
            ("EdFi_Admin", "admin"),
            ("EdFi_Ods", "ods"),
            ("EdFi_Security", "security")
        ]
    );
    for (name, value) in listed {
        assert_eq!(set.get(name).unwrap().expose(), value);
    }
    assert!(set.get("edfi_admin").is_none());
    assert!(set.get("EdFi").is_none());
    assert!(set.get("Z").is_none());
    assert!(!set.is_empty());
    assert!(ConnectionStringSet::default().is_empty());
}

/// Sets are packed against the first one: tenants' strings that differ in a
/// database name and a password keep in a fraction of their length, and any
/// set, like the reference or not, comes back as it went in.
#[test]
fn connection_string_sets_pack_small_and_come_back_whole() {
    let set = |tenant: &str, password: &str| -> ConnectionStringSet {
        ["EdFi_Admin", "EdFi_Security"]
            .into_iter()
            .map(|db| {
                let value = format!(
                    "Host=db.internal; Port=5432; Username=gateway; Password={password}; \
                     Database={db}_{tenant}; Application Name=TenantGateway;"
                );
                (db.to_owned(), Secret::new(value))
            })
            .collect()
    };
    // Whichever set a test of this process packed first is the reference;
    // these are like each other, so at least the later ones pack small.
    let sets: Vec<_> = (0..20)
        .map(|i| set(&format!("t{i:05}"), &format!("pw-{i}")))
        .collect();
    let whole: usize = sets[19]
        .entries()
        .iter()
        .map(|(k, v)| k.len() + v.expose().len())
        .sum();
    let _ = set("other", "other");
    assert!(
        sets.iter().skip(1).any(|s| s.packed_len() * 2 < whole),
        "{} packed bytes for {whole}",
        sets[19].packed_len()
    );
    for (i, s) in sets.iter().enumerate() {
        let admin = s.get("EdFi_Admin").unwrap();
        assert!(
            admin
                .expose()
                .contains(&format!("Database=EdFi_Admin_t{i:05};"))
        );
        assert!(admin.expose().contains(&format!("Password=pw-{i};")));
        assert_eq!(s, &set(&format!("t{i:05}"), &format!("pw-{i}")));
    }
    assert_ne!(sets[0], sets[1]);
    let unlike: ConnectionStringSet = [
        (String::new(), Secret::new(String::new())),
        ("ü".to_owned(), Secret::new("x".repeat(70_000))),
    ]
    .into_iter()
    .collect();
    let entries = unlike.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!((entries[0].0.as_str(), entries[0].1.expose()), ("", ""));
    assert_eq!(entries[1].0, "ü");
    assert_eq!(entries[1].1.expose(), "x".repeat(70_000));
    let shown = format!("{:?}", sets[3]);
    assert!(
        shown.contains("EdFi_Admin") && !shown.contains("pw-3"),
        "{shown}"
    );
}

#[test]
fn tenants_naming_one_upstream_share_it() {
    let s = Settings::parse(
        r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"A":{},"B":{},"C":{}},
            "TenantGateway":{"Tenants":{
                "A":{"Upstream":"http://10.0.0.5:8080/api"},
                "B":{"Upstream":"http://10.0.0.5:8080/api"},
                "C":{"Upstream":"http://10.0.0.6:8080"}}}}"#,
    )
    .unwrap();
    let up = |name: &str| {
        s.tenants
            .iter()
            .find(|t| t.name.as_str() == name)
            .and_then(|t| t.upstream.clone())
            .unwrap()
    };
    assert!(std::sync::Arc::ptr_eq(&up("A"), &up("B")));
    assert!(!std::sync::Arc::ptr_eq(&up("A"), &up("C")));
    assert_eq!(up("B").to_string(), "http://10.0.0.5:8080/api");
    assert_eq!(up("C").authority().unwrap().as_str(), "10.0.0.6:8080");
}
