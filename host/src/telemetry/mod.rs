//! Metrics in one prometheus-client registry, encoded (OpenMetrics text) at
//! `/metrics`. Each layer defines and registers its own families once, at
//! start, and holds them: nothing reads another layer's statics. This module
//! holds the request-level ones (requests, component calls, refusals, reloads)
//! and the encoding. Label values are bounded: tenant names come from the
//! directory (never from a raw header), routes and reasons from fixed sets.

pub mod log;
pub mod request;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use std::time::Duration;

pub use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the component latency histogram.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

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

impl EncodeLabelValue for Rejection {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    tenant: Arc<str>,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ComponentLabels {
    component: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: Rejection,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The request-level metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    components: HistogramFamily<ComponentLabels>,
    component_failures: Family<ComponentLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    /// The tenant label of requests no tenant was resolved for.
    no_tenant: Arc<str>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            components: Family::new_with_constructor(latency_histogram),
            component_failures: Family::default(),
            rejections: Family::default(),
            reloads: Family::default(),
            no_tenant: Arc::from(""),
        }
    }
}

impl Metrics {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "tg_http_requests",
            "Requests served, by tenant, route and status.",
            m.requests.clone(),
        );
        registry.register(
            "tg_component_call_seconds",
            "Duration of Wasm component calls, by component.",
            m.components.clone(),
        );
        registry.register(
            "tg_component_failures",
            "Component calls that trapped, timed out or answered nothing.",
            m.component_failures.clone(),
        );
        registry.register(
            "tg_rejections",
            "Requests refused, by reason.",
            m.rejections.clone(),
        );
        registry.register(
            "tg_settings_reloads",
            "Settings file reloads, by result.",
            m.reloads.clone(),
        );
        m
    }

    /// Counts a finished request: `tenant`'s metrics label when one was resolved.
    pub fn request(&self, tenant: Option<&Arc<str>>, route: &'static str, status: u16) {
        let labels = RequestLabels {
            tenant: tenant.unwrap_or(&self.no_tenant).clone(),
            route,
            status,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Records the duration of a component call, and whether it failed.
    /// `component`: its label, shared (nothing is copied per call).
    pub fn component_call(&self, component: &Arc<str>, took: Duration, failed: bool) {
        let labels = ComponentLabels {
            component: component.clone(),
        };
        self.components
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.component_failures.get_or_create(&labels).inc();
        }
    }

    /// Counts a refused request.
    pub fn reject(&self, why: Rejection) {
        self.rejections
            .get_or_create(&ReasonLabels { reason: why })
            .inc();
    }

    /// Counts a settings reload attempt.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "applied" } else { "rejected" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// A counter kept elsewhere, read when `/metrics` is scraped.
pub struct ReadCounter {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl ReadCounter {
    /// The counter `name` (`_total` is added), read by `read`.
    pub fn new(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            read: Box::new(read),
        }
    }
}

impl std::fmt::Debug for ReadCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCounter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for ReadCounter {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let counter = prometheus_client::metrics::counter::ConstCounter::new((self.read)());
        let metric =
            encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}

/// `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let t: Arc<str> = Arc::from("Tenant1");
        m.request(Some(&t), "config", 200);
        m.request(Some(&t), "config", 200);
        m.request(None, "health", 200);
        let api: Arc<str> = Arc::from("config-api");
        m.component_call(&api, Duration::from_micros(300), false);
        m.component_call(&api, Duration::from_millis(30), true);
        m.reject(Rejection::RateLimited);
        let text = encode(&registry);
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
        assert!(
            text.contains(
                "tg_component_call_seconds_bucket{le=\"0.0005\",component=\"config-api\"} 1\n"
            ) || text.contains(
                "tg_component_call_seconds_bucket{component=\"config-api\",le=\"0.0005\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("tg_component_failures_total{component=\"config-api\"} 1\n"));
        assert!(text.contains("tg_rejections_total{reason=\"rate_limited\"} 1\n"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
