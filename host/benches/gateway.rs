//! Benchmarks, each against a baseline measured in the same process:
//! 1. plugin call latency: fresh store + instantiate + call, vs a warm pooled instance;
//! 2. validation of one update in the Wasm validator vs the same Rust code natively;
//! 3. config GET requests/s through the gateway vs a plain hyper server answering
//!    the same bytes, over loopback with the same client;
//! 4. tenant traffic requests/s through the gateway's proxy vs straight to the
//!    upstream vs a minimal hyper proxy (no tenant logic), over loopback;
//! 5. (`--swap`) config API load while the validator is swapped 20 times through
//!    `/_components`, vs the same load with no swap: throughput, p99, failures,
//!    which versions served; compiling a component vs loading its verified
//!    precompiled artifact; and section 1 (warm instance gain).
//!
//! 6. (`--store`, also part of the full run) the store's reads, recorded writes
//!    and concurrent writes, embedded SQLite vs shared PostgreSQL (the local
//!    server, a schema of its own), and how soon a second PostgreSQL instance
//!    hears of a tenant change.
//!
//! 7. (`--isolation`, also part of the full run) another tenant's reads and
//!    `/healthz` while four requests loop in one tenant's validator, vs alone.
//!
//! 8. (`--allocs`) heap allocations and CPU time per request, counted over
//!    sequential requests on one connection: tenant traffic straight to the
//!    upstream, through a minimal hyper proxy and through the gateway, and GET
//!    …/config (the client's and the upstream's share is in every count; the
//!    differences are the proxies'). CPU time is the process's, so a busy
//!    machine slows it less than it does requests/s.
//!
//! Run: `cargo bench -p tenant-gateway --bench gateway` (add `-- --quick` for a
//! short run, `-- --proxy` for section 4 alone, `-- --swap` for section 5,
//! `-- --store` for section 6, `-- --config-get` for the gateway half of section 3,
//! `-- --plugin` for sections 1 and 2 (warm calls only, a hundred times as many),
//! e.g. under `perf`; scripts/bench-proxy, scripts/bench-swap and
//! scripts/bench-store do the first three).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tenant_gateway::config::{SAMPLE, Settings, Tier};
use tenant_gateway::wasm::Instance;

/// The minimal hyper proxy, shared with `scripts/bench-peers` (its `main` is
/// that script's).
#[path = "../examples/minimal_proxy.rs"]
#[allow(dead_code)]
mod minimal;

const PATCH: &str = r#"{"performance":{"cache_size_mb":2048,"max_parallel_workers":16},"security":{"require_mfa":true,"session_timeout_mins":60,"allowed_ips":["10.0.0.0/8","172.16.0.0/12"]},"compliance":{"hipaa":true}}"#;

/// The system allocator, counting allocations while [`COUNTING`] is set (a
/// relaxed load otherwise: the other sections' timings are not disturbed).
/// Counting crates count always (an atomic add per allocation, contended
/// across threads), which would slow every other section; the unsafe here
/// only forwards to `System`, as `GlobalAlloc` requires.
struct Counted;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counted = Counted;

/// This process's CPU time so far (all threads, user and system).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The least heap allocations and CPU microseconds per request of three runs
/// of [`allocations_in_run`]: what else the process does (compiling, timers)
/// only ever adds.
async fn allocations_per_request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &'static str)],
    n: u64,
) -> (f64, f64) {
    let mut least = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (allocs, cpu) = allocations_in_run(addr, path, headers, n).await;
        least = (least.0.min(allocs), least.1.min(cpu));
    }
    least
}

/// Heap allocations (and reallocations) and CPU microseconds per request of `n`
/// sequential GETs of `path` on one keep-alive connection, after a warm-up.
async fn allocations_in_run(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &'static str)],
    n: u64,
) -> (f64, f64) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
    let get = || {
        let mut req = hyper::Request::get(uri.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = client.request(req.body(Empty::new()).unwrap());
        async move {
            let resp = resp.await.expect("request");
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.expect("body");
        }
    };
    for _ in 0..200 {
        get().await;
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let cpu = process_cpu();
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..n {
        get().await;
    }
    COUNTING.store(false, Ordering::Relaxed);
    let cpu = (process_cpu() - cpu).as_secs_f64() * 1e6 / n as f64;
    let allocs = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    (allocs, cpu)
}

/// Section 8.
async fn allocation_bench(upstream: SocketAddr, gateway: SocketAddr, quick: bool) {
    let n = if quick { 2_000 } else { 10_000 };
    println!(
        "\n8. per request (client and upstream included), least of 3 runs of {n} sequential GETs on one connection"
    );
    let minimal = minimal_proxy(upstream).await;
    let path = "/orders/42?x=1";
    let direct = allocations_per_request(upstream, path, &[], n).await;
    let min = allocations_per_request(minimal, path, &[], n).await;
    let gw = allocations_per_request(gateway, path, &[("Tenant", "Tenant1")], n).await;
    let config = allocations_per_request(gateway, "/api/v1/tenants/Tenant1/config", &[], n).await;
    println!("  {:<34} {:>8} {:>10}", "", "allocs", "CPU µs");
    for (what, (allocs, cpu)) in [
        ("straight to the upstream", direct),
        ("minimal hyper proxy", min),
        ("tenant-gateway proxy", gw),
        ("tenant-gateway GET …/config", config),
    ] {
        println!("  {what:<34} {allocs:>8.1} {cpu:>10.1}");
    }
    println!(
        "  gateway proxy over minimal proxy: +{:.1} allocs, +{:.1} µs CPU",
        gw.0 - min.0,
        gw.1 - min.1
    );
}

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        median: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        mean: samples.iter().sum::<Duration>() / n as u32,
    }
}

fn show(name: &str, s: &Stats) {
    println!(
        "  {name:<44} median {:>9.1} µs   p99 {:>9.1} µs   mean {:>9.1} µs",
        s.median.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        s.mean.as_secs_f64() * 1e6
    );
}

async fn time_async<F, Fut>(n: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 + 1 {
        f().await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// Drives `GET url` with `conns` keep-alive connections for `dur`; returns requests/s.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    conns: usize,
    dur: Duration,
) -> f64 {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(conns)
        .build_http();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, uri, stop, done) = (client.clone(), uri.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut req = hyper::Request::get(uri.clone());
                for (name, value) in headers {
                    req = req.header(*name, *value);
                }
                let resp = client
                    .request(req.body(Empty::new()).unwrap())
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("body");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up the connections, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(dur).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count as f64 / elapsed.as_secs_f64()
}

/// A plain hyper HTTP/1.1 server answering every request with `body`.
async fn plain_server(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(body));
                        r.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The smallest useful reverse proxy (`examples/minimal_proxy.rs`: hyper
/// server, pooled hyper client, the request forwarded as it is to `upstream`),
/// on a port of its own. The baseline for the gateway's proxy.
async fn minimal_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(minimal::serve(listener, upstream));
    addr
}

/// Section 4: the same upstream reached directly, through a minimal hyper proxy,
/// and through the gateway (Tenant header → tenant → upstream).
async fn proxy_bench(upstream: SocketAddr, body_len: usize, gateway: SocketAddr, dur: Duration) {
    println!(
        "\n4. tenant traffic GET over loopback, 16 keep-alive connections, {body_len}-byte upstream body"
    );
    let minimal = minimal_proxy(upstream).await;
    let direct = load(upstream, "/orders/42?x=1", &[], 16, dur).await;
    let min = load(minimal, "/orders/42?x=1", &[], 16, dur).await;
    let gw = load(gateway, "/orders/42?x=1", &[("Tenant", "Tenant1")], 16, dur).await;
    println!("  straight to the upstream:        {direct:>10.0} req/s");
    println!("  minimal hyper proxy:             {min:>10.0} req/s");
    println!("  tenant-gateway proxy:            {gw:>10.0} req/s");
    println!(
        "  ratios: gateway / upstream {:.3}, minimal proxy / upstream {:.3}, gateway / minimal proxy {:.3}",
        gw / direct,
        min / direct,
        gw / min
    );
}

/// Section 1: a plugin call on a fresh store and instance vs a warm pooled one
/// (`warm_only`: the warm calls alone). Returns the warm validator's stats
/// (section 2 compares them with native code).
async fn plugin_bench(
    runtime: &tenant_gateway::wasm::Runtime,
    defaults: &str,
    n: usize,
    warm_only: bool,
) -> Stats {
    println!("\n1. plugin call latency (feature gate list-features, validator apply-patch)");
    let gate = |kind: Instance| {
        move || async move {
            runtime
                .list_features(Tier::Enterprise, defaults, kind)
                .await
                .unwrap();
        }
    };
    let validator = |kind: Instance| {
        move || async move {
            runtime
                .apply_patch(None, PATCH, kind)
                .await
                .unwrap()
                .unwrap();
        }
    };
    let gate_warm = time_async(n, gate(Instance::Warm)).await;
    let val_warm = time_async(n, validator(Instance::Warm)).await;
    let fresh = if warm_only {
        None
    } else {
        Some((
            time_async(n, gate(Instance::Fresh)).await,
            time_async(n / 10, validator(Instance::Fresh)).await,
        ))
    };
    if let Some((gate_fresh, _)) = &fresh {
        show("feature gate: fresh store+instantiate+call", gate_fresh);
    }
    show("feature gate: warm instance call", &gate_warm);
    if let Some((_, val_fresh)) = &fresh {
        show("validator: fresh store+instantiate+call", val_fresh);
    }
    show("validator: warm instance call", &val_warm);
    if let Some((gate_fresh, val_fresh)) = &fresh {
        println!(
            "  warm pool speed-up: feature gate x{:.1}, validator x{:.1} (median)",
            gate_fresh.median.as_secs_f64() / gate_warm.median.as_secs_f64(),
            val_fresh.median.as_secs_f64() / val_warm.median.as_secs_f64()
        );
    }
    val_warm
}

/// One request of the swap load: when it ended (since the load began), how
/// long it took, and whether it got the answer expected.
struct Sample {
    at: Duration,
    took: Duration,
    ok: bool,
}

fn window(samples: &[Sample], from: Duration, to: Duration) -> (f64, Duration, usize) {
    let mut took: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .map(|s| s.took)
        .collect();
    let failed = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to && !s.ok)
        .count();
    took.sort();
    let p99 = took
        .get((took.len() * 99 / 100).min(took.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    (took.len() as f64 / (to - from).as_secs_f64(), p99, failed)
}

/// Section 5: 16 keep-alive connections alternate a config update the
/// validator refuses (400, nothing written: the validator, not the disk, is
/// measured) and a feature list (200). After a steady phase, the validator is
/// swapped 20 times through `PUT /_components/validator`, alternating two
/// versions. Every answer other than the expected one counts as a failure.
async fn swap_bench(addr: SocketAddr, quick: bool) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    let (steady, swapping) = if quick {
        (Duration::from_secs(3), Duration::from_secs(10))
    } else {
        (Duration::from_secs(10), Duration::from_secs(30))
    };
    println!(
        "\n5. live validator swaps under load: {}s steady, then 20 swaps in {}s; 16 keep-alive connections",
        steady.as_secs(),
        swapping.as_secs()
    );
    let credentials = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:change-me-dev-password")
        )
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(32)
        .build_http();
    let base = format!("http://{addr}");
    let versions = [
        Bytes::from(std::fs::read(env!("TG_FAULTY_VALIDATOR_WASM")).unwrap()),
        tenant_gateway::wasm::builtin::VALIDATOR.wasm(),
    ];
    let swap = |bytes: Bytes| {
        let client = client.clone();
        let (base, credentials) = (base.clone(), credentials.clone());
        async move {
            let t = Instant::now();
            let resp = client
                .request(
                    hyper::Request::put(format!("{base}/_components/validator"))
                        .header("authorization", &credentials)
                        .header("content-type", "application/wasm")
                        .body(Full::new(bytes))
                        .unwrap(),
                )
                .await
                .expect("swap request");
            assert_eq!(resp.status(), 200, "swap refused");
            resp.into_body().collect().await.unwrap();
            t.elapsed()
        }
    };
    // The first upload of a module new to the gateway compiles it (once); the
    // swaps measured below are of known modules, loaded from the cache.
    let first = swap(versions[0].clone()).await;
    swap(versions[1].clone()).await;
    println!(
        "  first upload of the second validator (compiled, no load): {:.0} ms",
        first.as_secs_f64() * 1e3
    );
    let stop = Arc::new(AtomicBool::new(false));
    let served: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..16 {
        let (client, stop, served, base) =
            (client.clone(), stop.clone(), served.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let update = i % 2 == 0;
                let req = if update {
                    hyper::Request::put(format!("{base}/api/v1/tenants/Tenant1/config"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(
                            br#"{"performance":{"cache_size_mb":200000}}"#,
                        )))
                } else {
                    hyper::Request::get(format!("{base}/api/v1/tenants/Tenant2/features"))
                        .body(Full::new(Bytes::new()))
                }
                .unwrap();
                let t = Instant::now();
                let (ok, version) = match client.request(req).await {
                    Ok(resp) => {
                        let expected = if update { 400 } else { 200 };
                        let version = resp
                            .headers()
                            .get("x-tg-components")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.split(", ").find_map(|p| p.strip_prefix("validator=")))
                            .map(str::to_owned);
                        let status = resp.status().as_u16();
                        let body = resp.into_body().collect().await;
                        (status == expected && body.is_ok(), version)
                    }
                    Err(_) => (false, None),
                };
                samples.push(Sample {
                    at: began.elapsed(),
                    took: t.elapsed(),
                    ok,
                });
                if update && let Some(v) = version {
                    *served.lock().unwrap().entry(v).or_default() += 1;
                }
            }
            samples
        }));
    }
    tokio::time::sleep(steady).await;
    let gap = swapping / 20;
    let mut swap_times = Vec::new();
    for k in 0..20 {
        let next = began + steady + gap * k as u32 + gap / 2;
        tokio::time::sleep_until(next.into()).await;
        swap_times.push(swap(versions[k % 2].clone()).await);
    }
    tokio::time::sleep_until((began + steady + swapping).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    let warm = Duration::from_millis(500);
    let (steady_rps, steady_p99, steady_failed) = window(&samples, warm, steady);
    let (swap_rps, swap_p99, swap_failed) = window(&samples, steady, steady + swapping);
    swap_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  steady:        {steady_rps:>9.0} req/s   p99 {:>7.2} ms   failed {steady_failed}",
        ms(steady_p99)
    );
    println!(
        "  during swaps:  {swap_rps:>9.0} req/s   p99 {:>7.2} ms   failed {swap_failed}",
        ms(swap_p99)
    );
    println!(
        "  ratios during swaps / steady: throughput {:.3}, p99 {:.2}",
        swap_rps / steady_rps,
        swap_p99.as_secs_f64() / steady_p99.as_secs_f64()
    );
    println!(
        "  20 swaps: median {:.1} ms, max {:.1} ms each (check, cached artifact, self-test, publish)",
        ms(swap_times[10]),
        ms(swap_times[19])
    );
    println!(
        "  updates answered by each validator version: {:?}",
        served.lock().unwrap()
    );
    println!(
        "  requests: {} in all, {} failed",
        samples.len(),
        samples.iter().filter(|s| !s.ok).count()
    );
}

/// Compiling the validator component vs loading its verified precompiled artifact.
fn cache_bench(quick: bool) {
    use tenant_gateway::wasm::cache;
    let bytes = &tenant_gateway::wasm::builtin::VALIDATOR.wasm();
    println!(
        "\n6. component load: compile vs verified precompiled artifact ({:.1} MB validator)",
        bytes.len() as f64 / 1e6
    );
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runs = if quick { 2 } else { 3 };
    let compile: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let (_, compiled) = cache::compile_uncached(&engine, "validator", bytes).unwrap();
            assert!(compiled);
            t.elapsed()
        })
        .collect();
    let cache =
        cache::ArtifactCache::open(&dir.path().join("cache"), &dir.path().join("cache.key"))
            .unwrap();
    cache
        .compile(&engine, "validator", bytes, &Default::default())
        .unwrap();
    let mut load: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let (_, compiled) = cache
                .compile(&engine, "validator", bytes, &Default::default())
                .unwrap();
            assert!(!compiled);
            t.elapsed()
        })
        .collect();
    load.sort();
    let compile_median = {
        let mut c = compile.clone();
        c.sort();
        c[c.len() / 2]
    };
    println!(
        "  compile: {:>8.1} ms (median of {runs})",
        compile_median.as_secs_f64() * 1e3
    );
    println!(
        "  verified artifact load: {:>8.2} ms (median of 20, HMAC check included)",
        load[10].as_secs_f64() * 1e3
    );
    println!(
        "  ratio compile / cached load: x{:.0}",
        compile_median.as_secs_f64() / load[10].as_secs_f64()
    );
    // What the integrity check costs: one SHA-256 pass over the artifact.
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .map(|p| std::fs::read(p).unwrap())
        .unwrap();
    let mut hashing: Vec<Duration> = (0..20)
        .map(|_| {
            use sha2::Digest;
            let t = Instant::now();
            std::hint::black_box(sha2::Sha256::digest(&artifact));
            t.elapsed()
        })
        .collect();
    hashing.sort();
    println!(
        "  of which the integrity check (SHA-256 over the {:.1} MB artifact): {:.2} ms",
        artifact.len() as f64 / 1e6,
        hashing[10].as_secs_f64() * 1e3
    );
}

/// Times `n` calls of `f` (after a tenth as many unmeasured).
fn time_sync(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..n / 10 + 1 {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// Section 6: the same store operations on SQLite and on PostgreSQL.
fn store_bench(quick: bool) {
    use tenant_gateway::store::testing::{TestSchema, config_change as change};
    use tenant_gateway::store::{Expect, PostgresStore, SqliteStore, Store};
    let n = if quick { 200 } else { 2000 };
    let dir = tempfile::tempdir().unwrap();
    let db = TestSchema::new();
    let sqlite = SqliteStore::open(dir.path()).unwrap();
    let postgres = PostgresStore::open(db.connection(), None).unwrap();
    let config = tg_validator::shared().default_config().to_string();
    println!(
        "\n6. the store: embedded SQLite (WAL, synchronous=FULL) vs shared PostgreSQL (local, loopback); {}-byte configuration, {n} operations",
        config.len()
    );
    let mut results = Vec::new();
    for (name, store) in [
        ("SQLite", &sqlite as &dyn Store),
        ("PostgreSQL", &postgres as &dyn Store),
    ] {
        store.set("configs", "bench", config.as_bytes()).unwrap();
        let read = time_sync(n, || {
            std::hint::black_box(store.get("configs", "bench").unwrap());
        });
        let write = time_sync(n, || {
            let v = store.get("configs", "bench").unwrap().unwrap().version;
            let c = change("bench");
            let done = store.write_recorded(
                "configs",
                "bench",
                Expect::Version(v),
                Some(config.as_bytes()),
                &c,
            );
            assert!(done.unwrap().is_some());
        });
        // Four writers, each on its own tenant's key.
        let started = Instant::now();
        std::thread::scope(|scope| {
            for w in 0..4 {
                let config = &config;
                let change = &change;
                scope.spawn(move || {
                    let key = format!("bench-{w}");
                    for _ in 0..n / 4 {
                        let c = change(&key);
                        store
                            .write_recorded(
                                "configs",
                                &key,
                                Expect::Any,
                                Some(config.as_bytes()),
                                &c,
                            )
                            .unwrap();
                    }
                });
            }
        });
        let parallel = (n / 4 * 4) as f64 / started.elapsed().as_secs_f64();
        show(&format!("{name}: read one configuration"), &read);
        show(&format!("{name}: read + recorded write"), &write);
        println!("  {name}: recorded writes by 4 threads: {parallel:>10.0} writes/s");
        results.push((read, write, parallel));
    }
    let (s, p) = (&results[0], &results[1]);
    println!(
        "  ratio PostgreSQL / SQLite (median time): read x{:.2}, read + write x{:.2}; 4-thread write rate x{:.2}",
        p.0.median.as_secs_f64() / s.0.median.as_secs_f64(),
        p.1.median.as_secs_f64() / s.1.median.as_secs_f64(),
        p.2 / s.2
    );

    // How soon another instance hears of a tenant change.
    let other = PostgresStore::open(db.connection(), None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let tx = std::sync::Mutex::new(tx);
    other.on_change(Arc::new(move || {
        let _ = tx.lock().unwrap().send(Instant::now());
    }));
    rx.recv_timeout(Duration::from_secs(5)).expect("listening");
    let rounds = if quick { 20 } else { 200 };
    let (mut written, mut woken) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        let tier = if i % 2 == 0 { "Pro" } else { "Basic" };
        let t = Instant::now();
        postgres
            .seed_tenant("bench-tenant", "BenchTenant", tier, "2025-01-01T00:00:00Z")
            .unwrap();
        written.push(t.elapsed());
        let heard = rx.recv_timeout(Duration::from_secs(5)).expect("heard");
        woken.push(heard.duration_since(t));
    }
    show("tenant change: write returned (committed)", &stats(written));
    show("tenant change: other instance woken", &stats(woken));
}

/// Section 7: one tenant's component that computes without end must not slow
/// the others. A gateway process (this build's binary) whose Tenant1 has the
/// fault-injecting validator as its own; one client times Tenant2's config
/// reads and `/healthz` back to back, first alone, then while four requests
/// keep Tenant1's validator looping (each until its 2 s deadline, then again).
fn isolation_bench(quick: bool) {
    use std::io::{BufRead, BufReader, Read, Write};
    let dur = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    std::fs::create_dir_all(&components).unwrap();
    std::fs::copy(
        env!("TG_FAULTY_VALIDATOR_WASM"),
        components.join("validator@Tenant1.wasm"),
    )
    .unwrap();
    let mut settings: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
    settings["TenantGateway"]["Limits"]["ComponentTimeoutMs"] = 2000.into();
    settings["TenantGateway"]["RateLimits"] = serde_json::json!({"Enabled": false});
    settings["TenantGateway"]["Auth"]["RequireToken"] = false.into();
    let file = dir.path().join("appsettings.json");
    std::fs::write(&file, settings.to_string()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-gateway"))
        .arg("serve")
        .arg("--settings")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--components")
        .arg(&components)
        // A bench that fails (a panic skips the kill below) leaves no gateway.
        .arg("--exit-with-parent")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let request = |method: &str, path: &str, body: &str| -> u16 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    };
    let measure = |what: &str| -> Stats {
        let mut samples = Vec::new();
        let until = Instant::now() + dur;
        while Instant::now() < until {
            for path in ["/api/v1/tenants/Tenant2/config", "/healthz"] {
                let t = Instant::now();
                assert_eq!(request("GET", path, ""), 200, "{what}: {path}");
                samples.push(t.elapsed());
            }
        }
        let s = stats(samples);
        show(what, &s);
        s
    };
    println!(
        "\n7. another tenant's requests while 4 requests loop in Tenant1's validator (2 s deadline each), {}s each",
        dur.as_secs()
    );
    let alone = measure("Tenant2 config + /healthz, alone");
    let stop = AtomicBool::new(false);
    let looped = AtomicU64::new(0);
    let queued_out = AtomicU64::new(0);
    let during = std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let code = request(
                        "PUT",
                        "/api/v1/tenants/Tenant1/config",
                        r#"{"custom_settings":{"x":"fault:spin"}}"#,
                    );
                    // One tenant's updates take turns: the one looping ends at
                    // its deadline (500); one that waited out a deadline for
                    // its turn is told to retry (503).
                    match code {
                        500 => looped.fetch_add(1, Ordering::Relaxed),
                        503 => queued_out.fetch_add(1, Ordering::Relaxed),
                        other => panic!("a looping update answered {other}"),
                    };
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let during = measure("Tenant2 config + /healthz, 4 loops running");
        stop.store(true, Ordering::Relaxed);
        during
    });
    println!(
        "  looping requests ended (each at its deadline): {}; waited out their turn (503): {}",
        looped.load(Ordering::Relaxed),
        queued_out.load(Ordering::Relaxed)
    );
    println!(
        "  ratio during / alone: median x{:.2}, p99 x{:.2}",
        during.median.as_secs_f64() / alone.median.as_secs_f64(),
        during.p99.as_secs_f64() / alone.p99.as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--isolation") {
        isolation_bench(quick);
        return;
    }
    let store_only = std::env::args().any(|a| a == "--store");
    if store_only {
        store_bench(quick);
        return;
    }
    let proxy_only = std::env::args().any(|a| a == "--proxy");
    let swap_only = std::env::args().any(|a| a == "--swap");
    // Sections 1 and 2 alone, warm calls only and a hundred times as many
    // (e.g. under `perf`).
    let plugin_only = std::env::args().any(|a| a == "--plugin");
    let plugin_rounds = if plugin_only { 100 } else { 1 };
    let (n, dur) = if quick {
        (300, Duration::from_secs(1))
    } else {
        (3000, Duration::from_secs(5))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `false`: one section was asked for and has run.
    let full_run = rt.block_on(async move {
        let data = tempfile::tempdir().unwrap();
        let upstream_body = Bytes::from(format!("{{\"orders\":[{}]}}", "1,".repeat(100) + "1"));
        let upstream = plain_server(upstream_body.clone()).await;
        let mut settings = Settings::parse(SAMPLE).unwrap();
        settings.limits.max_concurrent_component_calls = 256;
        // Measured here: the request path, not the credential check or the limits.
        settings.auth.require_token = false;
        settings.rate_limits.enabled = false;
        settings.tenants[0].upstream = Some(std::sync::Arc::new(
            format!("http://{upstream}").parse().unwrap(),
        ));
        let running = tenant_gateway::start(
            tenant_gateway::Options {
                settings,
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: data.path().join("data"),
                cache_dir: Some(data.path().join("cache")),
                cache_key: None,
                components_dir: None,
                compile_with: None,
                watch: None,
                log_lines_dropped: None,
            },
            std::future::pending(),
        )
        .await
        .unwrap();
        if std::env::args().any(|a| a == "--config-get") {
            // Section 3 alone (e.g. under a profiler).
            let r = load(running.addr, "/api/v1/tenants/Tenant1/config", &[], 16, dur).await;
            println!("GET /api/v1/tenants/Tenant1/config: {r:.0} req/s");
            running.stop().await.unwrap();
            return false;
        }
        if std::env::args().any(|a| a == "--allocs") {
            allocation_bench(upstream, running.addr, quick).await;
            running.stop().await.unwrap();
            return false;
        }
        if proxy_only {
            proxy_bench(upstream, upstream_body.len(), running.addr, dur).await;
            running.stop().await.unwrap();
            return false;
        }
        let runtime = running.runtime.clone();
        let defaults = tg_validator::shared().default_config().to_string();
        if swap_only {
            swap_bench(running.addr, quick).await;
            tokio::task::spawn_blocking(move || cache_bench(quick))
                .await
                .unwrap();
            plugin_bench(&runtime, &defaults, n, false).await;
            running.stop().await.unwrap();
            return false;
        }

        println!(
            "tenant-gateway benchmarks ({} samples per latency, {:?} per load run)",
            n, dur
        );

        let val_warm = plugin_bench(&runtime, &defaults, n * plugin_rounds, plugin_only).await;

        println!("\n2. validation of one update: Wasm (warm instance) vs native Rust");
        let native = {
            let v = tg_validator::shared();
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                std::hint::black_box(v.apply_patch(None, std::hint::black_box(PATCH)).unwrap());
                samples.push(t.elapsed());
            }
            stats(samples)
        };
        show("native tg_validator::apply_patch", &native);
        show("Wasm validator (host call, warm)", &val_warm);
        println!(
            "  ratio Wasm / native: x{:.2} (median)",
            val_warm.median.as_secs_f64() / native.median.as_secs_f64()
        );
        if plugin_only {
            running.stop().await.unwrap();
            return false;
        }

        println!(
            "\n3. GET /api/v1/tenants/Tenant1/config over loopback, 16 keep-alive connections"
        );
        let body = {
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let uri: hyper::Uri = format!("http://{}/api/v1/tenants/Tenant1/config", running.addr)
                .parse()
                .unwrap();
            client
                .get(uri)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
        };
        let plain = plain_server(body.clone()).await;
        let baseline = load(plain, "/api/v1/tenants/Tenant1/config", &[], 16, dur).await;
        let gateway = load(running.addr, "/api/v1/tenants/Tenant1/config", &[], 16, dur).await;
        println!(
            "  plain hyper server, same {}-byte body: {:>10.0} req/s",
            body.len(),
            baseline
        );
        println!(
            "  tenant-gateway (config API component): {:>10.0} req/s",
            gateway
        );
        println!("  ratio gateway / plain hyper: {:.3}", gateway / baseline);
        proxy_bench(upstream, upstream_body.len(), running.addr, dur).await;
        running.stop().await.unwrap();
        tokio::task::spawn_blocking(move || store_bench(quick))
            .await
            .unwrap();
        true
    });
    if full_run {
        isolation_bench(quick);
    }
}
