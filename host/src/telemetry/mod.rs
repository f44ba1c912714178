//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//! Counters are atomics in sharded maps keyed by small copyable keys, so
//! counting a request takes no lock shared by all requests and allocates only
//! the first time a key is seen. Label values are bounded: tenant names come
//! from the directory (never from a raw header), routes from a fixed set.

use dashmap::DashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the component latency histogram.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Why a request was refused before reaching a component or upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// No `Tenant` header where one is needed.
    TenantMissing,
    /// A malformed `Tenant` header.
    TenantInvalid,
    /// A `Tenant` header naming no tenant.
    TenantUnknown,
    /// Missing or bad credentials (401).
    Unauthenticated,
    /// Valid credentials, wrong tenant (403).
    Forbidden,
    /// Over the tenant's rate limit (429).
    RateLimited,
    /// Body over the size limit (413).
    BodyTooLarge,
    /// No free component slot (503).
    Capacity,
    /// Too many password checks from one address or for one user (429).
    SignInThrottled,
    /// Every password-checking slot taken (503).
    SignInBusy,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::TenantMissing => "tenant_missing",
            Rejection::TenantInvalid => "tenant_invalid",
            Rejection::TenantUnknown => "tenant_unknown",
            Rejection::Unauthenticated => "unauthenticated",
            Rejection::Forbidden => "forbidden",
            Rejection::RateLimited => "rate_limited",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::Capacity => "capacity",
            Rejection::SignInThrottled => "sign_in_throttled",
            Rejection::SignInBusy => "sign_in_busy",
        }
    }
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: DashMap<(Option<uuid::Uuid>, &'static str, u16), (String, AtomicU64)>,
    components: DashMap<String, Histogram>,
    component_failures: DashMap<String, AtomicU64>,
    rejections: DashMap<Rejection, AtomicU64>,
    reloads: DashMap<&'static str, AtomicU64>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts a finished request. `tenant`: (id, name) when one was resolved.
    pub fn request(&self, tenant: Option<(uuid::Uuid, &str)>, route: &'static str, status: u16) {
        let key = (tenant.map(|t| t.0), route, status);
        if let Some(c) = self.requests.get(&key) {
            c.1.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let name = tenant.map(|t| t.1.to_owned()).unwrap_or_default();
        self.requests
            .entry(key)
            .or_insert_with(|| (name, AtomicU64::new(0)))
            .1
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records the duration of a component call, and whether it failed.
    pub fn component_call(&self, component: &str, took: Duration, failed: bool) {
        match self.components.get(component) {
            Some(h) => h.observe(took),
            None => self
                .components
                .entry(component.to_owned())
                .or_default()
                .observe(took),
        }
        if failed {
            self.component_failures
                .entry(component.to_owned())
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refused request.
    pub fn reject(&self, why: Rejection) {
        self.rejections
            .entry(why)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a settings reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .entry(if ok { "applied" } else { "rejected" })
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP tg_http_requests_total Requests served, by tenant, route and status.\n",
        );
        out.push_str("# TYPE tg_http_requests_total counter\n");
        let mut rows: Vec<String> = self
            .requests
            .iter()
            .map(|e| {
                let (_, route, status) = *e.key();
                let (tenant, n) = e.value();
                format!(
                    "tg_http_requests_total{{tenant=\"{}\",route=\"{route}\",status=\"{status}\"}} {}\n",
                    escape(tenant),
                    n.load(Ordering::Relaxed)
                )
            })
            .collect();
        rows.sort();
        rows.iter().for_each(|r| out.push_str(r));

        out.push_str(
            "# HELP tg_component_call_seconds Duration of Wasm component calls, by component.\n",
        );
        out.push_str("# TYPE tg_component_call_seconds histogram\n");
        let mut names: Vec<String> = self.components.iter().map(|e| e.key().clone()).collect();
        names.sort();
        for name in names {
            let Some(h) = self.components.get(&name) else {
                continue;
            };
            let c = escape(&name);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "tg_component_call_seconds_bucket{{component=\"{c}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tg_component_call_seconds_bucket{{component=\"{c}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "tg_component_call_seconds_sum{{component=\"{c}\"}} {}",
                h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "tg_component_call_seconds_count{{component=\"{c}\"}} {count}"
            );
        }

        out.push_str("# HELP tg_component_failures_total Component calls that trapped, timed out or answered nothing.\n");
        out.push_str("# TYPE tg_component_failures_total counter\n");
        for e in self.component_failures.iter() {
            let _ = writeln!(
                out,
                "tg_component_failures_total{{component=\"{}\"}} {}",
                escape(e.key()),
                e.value().load(Ordering::Relaxed)
            );
        }

        out.push_str("# HELP tg_rejections_total Requests refused, by reason.\n");
        out.push_str("# TYPE tg_rejections_total counter\n");
        for e in self.rejections.iter() {
            let _ = writeln!(
                out,
                "tg_rejections_total{{reason=\"{}\"}} {}",
                e.key().label(),
                e.value().load(Ordering::Relaxed)
            );
        }

        out.push_str("# HELP tg_settings_reloads_total Settings file reloads, by result.\n");
        out.push_str("# TYPE tg_settings_reloads_total counter\n");
        for e in self.reloads.iter() {
            let _ = writeln!(
                out,
                "tg_settings_reloads_total{{result=\"{}\"}} {}",
                e.key(),
                e.value().load(Ordering::Relaxed)
            );
        }
        let cache = crate::wasm::cache::stats();
        out.push_str("# HELP tg_component_artifacts_total How components were made ready: compiled, loaded precompiled from the cache, or cache entries refused.\n");
        out.push_str("# TYPE tg_component_artifacts_total counter\n");
        for (how, n) in [
            ("compiled", cache.compiled),
            ("cached", cache.cached),
            ("rejected", cache.rejected),
        ] {
            let _ = writeln!(out, "tg_component_artifacts_total{{how=\"{how}\"}} {n}");
        }
        out.push_str("# HELP tg_component_cold_instances_total Plugin instances made on the request path (no warm or primed one was ready).\n");
        out.push_str("# TYPE tg_component_cold_instances_total counter\n");
        let _ = writeln!(
            out,
            "tg_component_cold_instances_total {}",
            crate::wasm::cold_starts()
        );
        out.push_str("# HELP tg_component_calls_in_flight Config API and tenant app requests running in a component now (at most Limits.MaxConcurrentComponentCalls).\n");
        out.push_str("# TYPE tg_component_calls_in_flight gauge\n");
        let _ = writeln!(
            out,
            "tg_component_calls_in_flight {}",
            crate::wasm::calls_in_flight()
        );
        let (scans, reads) = crate::registry::directory_stats();
        out.push_str("# HELP tg_component_directory_scans_total Looks at the components directory (every 0.5 s).\n");
        out.push_str("# TYPE tg_component_directory_scans_total counter\n");
        let _ = writeln!(out, "tg_component_directory_scans_total {scans}");
        out.push_str("# HELP tg_component_directory_reads_total Files read from the components directory (new or changed ones only).\n");
        out.push_str("# TYPE tg_component_directory_reads_total counter\n");
        let _ = writeln!(out, "tg_component_directory_reads_total {reads}");
        let (sent, denied, failed) = crate::wasm::outbound::stats();
        out.push_str("# HELP tg_outbound_requests_total Outbound HTTP requests of components, by result: answered, denied (not allow-listed, or over the per-call budget), failed (connect, timeout, size cap).\n");
        out.push_str("# TYPE tg_outbound_requests_total counter\n");
        for (result, n) in [("answered", sent), ("denied", denied), ("failed", failed)] {
            let _ = writeln!(out, "tg_outbound_requests_total{{result=\"{result}\"}} {n}");
        }
        let (loaded, refused) = crate::wasm::load_stats();
        out.push_str("# HELP tg_component_loads_total Component loads (swaps), by result.\n");
        out.push_str("# TYPE tg_component_loads_total counter\n");
        let _ = writeln!(
            out,
            "tg_component_loads_total{{result=\"loaded\"}} {loaded}"
        );
        let _ = writeln!(
            out,
            "tg_component_loads_total{{result=\"refused\"}} {refused}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        let t = uuid::Uuid::from_u128(1);
        m.request(Some((t, "Tenant1")), "config", 200);
        m.request(Some((t, "Tenant1")), "config", 200);
        m.request(None, "health", 200);
        m.component_call("config-api", Duration::from_micros(300), false);
        m.component_call("config-api", Duration::from_millis(30), true);
        m.reject(Rejection::RateLimited);
        let text = m.render();
        assert!(
            text.contains(
                "tg_http_requests_total{tenant=\"Tenant1\",route=\"config\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tg_http_requests_total{tenant=\"\",route=\"health\",status=\"200\"} 1\n"
            )
        );
        assert!(text.contains(
            "tg_component_call_seconds_bucket{component=\"config-api\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "tg_component_call_seconds_bucket{component=\"config-api\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("tg_component_failures_total{component=\"config-api\"} 1\n"));
        assert!(text.contains("tg_rejections_total{reason=\"rate_limited\"} 1\n"));
    }
}
