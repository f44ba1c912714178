//! Property-based fuzzing of every parser of untrusted input (proptest, stable
//! toolchain): each target feeds generated input (arbitrary bytes and strings,
//! and mutations of valid documents, which reach deeper) and checks that the
//! parser answers — `Ok` or a clear `Err` — without panicking, and what it
//! accepts holds up (re-parsing a canonical DN gives itself; an accepted
//! patch validates again). Each prints how many inputs it ran and the slowest:
//!
//!   cargo test -p tenant-gateway --lib fuzz -- --nocapture          # 512 each (scripts/test)
//!   PROPTEST_CASES=200000 cargo test -p tenant-gateway --release --lib fuzz -- --nocapture
//!
//! Not here: `application/x-www-form-urlencoded` bodies are decoded by the
//! `form_urlencoded` crate, and component bytes by wasmtime's own parser
//! (fuzzed upstream); only the gateway's header check of them is.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::time::{Duration, Instant};

/// Inputs per target unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 512;

/// Runs `check` on `CASES` inputs from `strategy`, then prints the count and
/// the slowest input's time.
fn run<S: Strategy>(target: &str, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = std::cell::Cell::new(0u64);
    let slowest = std::cell::Cell::new(Duration::ZERO);
    runner
        .run(&strategy, |input| {
            let started = Instant::now();
            check(input);
            slowest.set(slowest.get().max(started.elapsed()));
            ran.set(ran.get() + 1);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("fuzz {target}: {e}"));
    eprintln!(
        "fuzz {target}: {} inputs, none panicked; slowest {:?}",
        ran.get(),
        slowest.get()
    );
    // A parser that takes this long on one small input is a hang in waiting.
    assert!(
        slowest.get() < Duration::from_secs(5),
        "fuzz {target}: one input took {:?}",
        slowest.get()
    );
}

/// Valid examples, mutated: bytes replaced, inserted and removed.
fn mutations(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(seed, edits)| {
            let mut bytes = seed.as_bytes().to_vec();
            for (at, byte, how) in edits {
                let i = usize::from(at) % (bytes.len() + 1);
                match how {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        })
}

/// Arbitrary bytes, or a mutated valid example (half each).
fn inputs(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), mutations(seeds)]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn fuzz_tenant_header() {
    let tmp = tempfile::tempdir().unwrap();
    let store = crate::store::SqliteStore::open(tmp.path()).unwrap();
    let (dir, settings) = crate::tenancy::Directory::sample(&store);
    let resolver = crate::tenancy::resolve::Resolver::new(&settings);
    run(
        "tenant-header",
        inputs(&[
            "Tenant1",
            " tenant2 ",
            "1b38837d-443f-5a1f-a382-1b6d3073b716",
            "a_b-c",
        ]),
        |bytes| {
            let _ = crate::config::TenantName::parse(&text(&bytes));
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                let mut headers = http::HeaderMap::new();
                headers.insert("tenant", value);
                if let Ok(t) = resolver.resolve(&headers, "/v2/x", &dir) {
                    assert!(dir.get(t.name.as_str()).is_some());
                }
            }
        },
    );
}

#[test]
fn fuzz_subject_dn() {
    run(
        "rfc2253-dn",
        inputs(&[
            "CN=Device CA,O=ACME\\, Inc.,C=DE",
            "2.5.4.3=#04024869,ou=a+cn=b",
            "cn=\"quoted, value\"",
        ]),
        |bytes| {
            if let Ok(canonical) = crate::tenancy::dn::canonical(&text(&bytes)) {
                let again =
                    crate::tenancy::dn::canonical(&canonical).expect("a canonical DN parses");
                assert_eq!(again, canonical, "canonical form is stable");
            }
        },
    );
}

#[test]
fn fuzz_doradus_documents() {
    run(
        "doradus-xml",
        inputs(&[
            r#"<tenant name="Acme"><users><user name="kat" password="Mockingjay-1"/></users><options><option name="ReplicationFactor">3</option></options></tenant>"#,
            "<tenant name='a'><![CDATA[x]]><!-- c --></tenant>",
            "<?xml version=\"1.0\"?><tenant name=\"&amp;\"/>",
        ]),
        |bytes| {
            let _ = crate::api::doradus::parse_xml(&bytes);
        },
    );
    run(
        "doradus-json",
        inputs(&[
            r#"{"Acme": {"users": {"kat": {"password": "Mockingjay-1"}}, "options": {"Tier": "Pro"}}}"#,
            r#"{"users": {"a": {"password": "p"}}}"#,
        ]),
        |bytes| {
            let _ = crate::api::doradus::parse_json(&bytes, None);
            let _ = crate::api::doradus::parse_json(&bytes, Some("Acme"));
        },
    );
}

#[test]
fn fuzz_strict_json() {
    run(
        "strict-json",
        inputs(&[r#"{"a": [1, 2.5e3, -0, "\u00e9", null], "b": {"c": {}}}"#]),
        |bytes| {
            if let Ok(v) = crate::http::json::parse(&bytes) {
                // What the strict reader accepts, the ordinary one reads the same.
                assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
                    Some(v)
                );
            }
        },
    );
}

#[test]
fn fuzz_config_patches() {
    let validator = tg_validator::shared();
    run(
        "config-patch",
        inputs(&[
            r#"{"performance":{"cache_size_mb":2048.0,"max_parallel_workers":8}}"#,
            r#"{"security":{"allowed_ips":["10.0.0.0/8"],"password_complexity":3},"compliance":{"hipaa":true}}"#,
            r#"{"custom_settings":{"x":null,"y":[1,{"z":true}]}}"#,
        ]),
        |bytes| {
            if let Ok(done) = validator.apply_patch(None, &text(&bytes)) {
                let again = validator
                    .apply_patch(None, &done.config.to_string())
                    .expect("an accepted configuration is accepted again");
                assert_eq!(again.config, done.config);
            }
        },
    );
}

#[test]
fn fuzz_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let store = crate::store::SqliteStore::open(tmp.path()).unwrap();
    let auth = crate::security::auth::Authenticator::open(&store).unwrap();
    let (good, _) = auth.issue(uuid::Uuid::from_u128(7), 42, "client-1", 3600);
    // The strategy wants seeds that live as long as the program.
    let good: &'static str = Box::leak(good.into_boxed_str());
    let seeds: &'static [&'static str] = Box::leak(Box::new([good]));
    run("bearer-token", inputs(seeds), |bytes| {
        if let Ok(claims) = auth.verify_token(&text(&bytes)) {
            assert_eq!(
                claims.tenant,
                uuid::Uuid::from_u128(7),
                "only our token verifies"
            );
        }
    });
}

#[test]
fn fuzz_settings_files() {
    run(
        "settings-file",
        inputs(&[
            crate::config::SAMPLE,
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{"ConnectionStrings":{"EdFi_Admin":"x"}}},"TenantGateway":{"Limits":{"MaxBodyBytes":10},"Apps":{"p":{"Component":"builtin:tenant-app","AllowedOutboundHosts":["https://*.svc:8000..8100"]}},"Routes":[{"Path":"/p","App":"p"}]}}"#,
        ]),
        |bytes| {
            let _ = crate::config::Settings::parse(&text(&bytes));
        },
    );
}

#[test]
fn fuzz_allowed_hosts() {
    run(
        "allowed-outbound-hosts",
        prop::collection::vec(
            inputs(&[
                "https://api.example.com",
                "*://10.0.0.0/8:*",
                "http://[::1]:80..90",
            ]),
            0..4,
        ),
        |entries| {
            let entries: Vec<String> = entries.iter().map(|b| text(b)).collect();
            if let Ok(list) = crate::config::allowed_hosts::AllowedHosts::parse(&entries) {
                let _ = list.allows("https", "api.example.com", None);
                let _ = list.allows("http", "[::1]", Some(85));
            }
        },
    );
}

#[test]
fn fuzz_component_uploads() {
    run(
        "component-header",
        inputs(&["\0asm\x0d\0\x01\0", "\0asm\x01\0\0\0"]),
        |bytes| {
            let _ = crate::wasm::components::check_header(&bytes);
        },
    );
}
