//! Hostile clients: floods of guessed passwords and client secrets are throttled
//! and cost the gateway bounded CPU and memory, and stall no other tenant.

use crate::harness::{Gateway, SUPER_USER, basic};
use crate::tenancy::{bearer, token_for};
use std::time::{Duration, Instant};

/// The gateway process's resident memory, in bytes.
fn resident(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// 200 wrong passwords at once, half as Basic credentials on a management API
/// and half as client secrets on `/connect/token`: most are refused (429, or
/// 503 when every hashing slot is taken) without a hash being computed, the
/// process grows by less than 100 MB, and another tenant's requests meanwhile
/// are answered as fast as ever. (Before: every guess cost a full Argon2 on the
/// async workers or on an unbounded blocking pool — 300 token guesses took the
/// process from 182 MB to 7.9 GB.)
#[test]
fn a_flood_of_guesses_is_throttled_and_stalls_no_one() {
    let gw = Gateway::start();
    let token = token_for(&gw, "Tenant2", "flood-bystander");
    assert_eq!(
        bearer(&gw, "/api/v1/tenants/Tenant2/config", &token).status,
        200
    );
    let before = resident(&gw);

    let wrong = basic(SUPER_USER.0, "not-the-password");
    let (statuses, bystander) = std::thread::scope(|s| {
        let flood: Vec<_> = (0..200)
            .map(|i| {
                let (gw, wrong) = (&gw, &wrong);
                s.spawn(move || {
                    if i % 2 == 0 {
                        gw.anonymous("GET", "/_tenants", &[("Authorization", wrong)], b"")
                            .status
                    } else {
                        let body = format!(
                            "grant_type=client_credentials&client_id=guess-{i}&client_secret=Wrong-Secret-0123456789-abcdefghij!"
                        );
                        gw.anonymous(
                            "POST",
                            "/connect/token",
                            &[("Content-Type", "application/x-www-form-urlencoded")],
                            body.as_bytes(),
                        )
                        .status
                    }
                })
            })
            .collect();
        // Meanwhile, another tenant's client reads its configuration.
        let mut took: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let r = bearer(&gw, "/api/v1/tenants/Tenant2/config", &token);
                assert_eq!(r.status, 200, "{}", r.body);
                t.elapsed()
            })
            .collect();
        took.sort();
        let statuses: Vec<u16> = flood.into_iter().map(|h| h.join().unwrap()).collect();
        (statuses, took)
    });
    let refused = statuses.iter().filter(|s| matches!(s, 429 | 503)).count();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused + checked, 200, "{statuses:?}");
    // From one address: 30 checks a minute (the default), the rest refused.
    assert!(
        checked <= 30,
        "{checked} guesses were checked: {statuses:?}"
    );
    let grew = resident(&gw).saturating_sub(before);
    assert!(grew < 100 << 20, "grew by {} MB", grew >> 20);
    assert!(
        bystander[2] < Duration::from_secs(1),
        "another tenant's reads took {bystander:?} during the flood"
    );
    let metrics = gw.anonymous("GET", "/metrics", &[], b"").body;
    assert!(
        metrics.contains("tg_rejections_total{reason=\"sign_in_throttled\"}"),
        "{metrics}"
    );
    // A 429 says when to come back.
    let r = gw.anonymous("GET", "/_tenants", &[("Authorization", &wrong)], b"");
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

/// One request may add at most 16 users (each a password hash): a Doradus
/// create with 17 is refused before any is hashed, and so is an update; 16 are
/// fine and every one of them can sign in. (Before: a create with 1,900 users
/// hashed for 55 s.)
#[test]
fn a_request_adds_a_bounded_number_of_users() {
    let gw = Gateway::start();
    // A Doradus JSON definition of tenant Many with `n` users.
    let with_users = |method: &str, path: &str, n: usize| {
        let users: Vec<String> = (0..n)
            .map(|i| format!(r#""user{i}": {{"password": "Password-{i}"}}"#))
            .collect();
        let body = format!(r#"{{"Many": {{"users": {{{}}}}}}}"#, users.join(","));
        gw.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let r = with_users("POST", "/_tenants?format=json", 17);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 16 users"), "{}", r.body);
    assert_eq!(gw.get("/_tenants/Many?format=json").status, 404);
    let r = with_users("POST", "/_tenants?format=json", 16);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = with_users("PUT", "/_tenants/Many?format=json", 17);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 16 users"), "{}", r.body);
    for i in [0, 15] {
        let creds = basic(&format!("user{i}"), &format!("Password-{i}"));
        let r = gw.anonymous(
            "GET",
            "/api/v1/tenants/Many/config",
            &[("Authorization", &creds)],
            b"",
        );
        assert_eq!(r.status, 200, "user{i}: {}", r.body);
    }
}
