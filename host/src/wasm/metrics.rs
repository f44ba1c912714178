//! What the Wasm layer counts: prometheus-client families registered once at
//! start and held by the runtime (no process-wide statics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct How {
    how: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

/// The runtime's metrics; the default is registered nowhere (unit tests).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    artifacts: Family<How, Counter>,
    cold_instances: Counter,
    in_flight: Gauge,
    outbound: Family<Outcome, Counter>,
    loads: Family<Outcome, Counter>,
}

/// How a component was made ready.
#[derive(Debug, Clone, Copy)]
pub enum Artifact {
    /// Compiled from source.
    Compiled,
    /// Loaded from a verified precompiled artifact.
    Cached,
    /// A built-in component loaded from the artifact precompiled into the binary.
    Embedded,
    /// An artifact found but refused (corrupt, foreign, another engine).
    Rejected,
}

/// What became of a component's outbound request.
#[derive(Debug, Clone, Copy)]
pub enum Outbound {
    /// Sent and answered.
    Answered,
    /// Refused: not allow-listed, or over the per-call budget.
    Denied,
    /// Sent but failed: connect, timeout, size cap.
    Failed,
}

impl Metrics {
    /// The families, registered in `registry`, every label set at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for a in [
            Artifact::Compiled,
            Artifact::Cached,
            Artifact::Embedded,
            Artifact::Rejected,
        ] {
            let _ = m.artifacts.get_or_create(&How { how: a.label() });
        }
        for o in [Outbound::Answered, Outbound::Denied, Outbound::Failed] {
            let _ = m.outbound.get_or_create(&Outcome { result: o.label() });
        }
        for result in ["loaded", "refused"] {
            let _ = m.loads.get_or_create(&Outcome { result });
        }
        registry.register(
            "tg_component_artifacts",
            "How components were made ready: compiled, loaded precompiled from the cache or (built-in ones) from the binary, or precompiled artifacts refused.",
            m.artifacts.clone(),
        );
        registry.register(
            "tg_component_cold_instances",
            "Plugin instances made on the request path (no warm or primed one was ready).",
            m.cold_instances.clone(),
        );
        registry.register(
            "tg_component_calls_in_flight",
            "Config API and tenant app requests running in a component now (at most Limits.MaxConcurrentComponentCalls).",
            m.in_flight.clone(),
        );
        registry.register(
            "tg_outbound_requests",
            "Outbound HTTP requests of components, by result: answered, denied (not allow-listed, or over the per-call budget), failed (connect, timeout, size cap).",
            m.outbound.clone(),
        );
        registry.register(
            "tg_component_loads",
            "Component loads (swaps), by result.",
            m.loads.clone(),
        );
        m
    }

    /// Counts how a component was made ready.
    pub fn artifact(&self, how: Artifact) {
        self.artifacts
            .get_or_create(&How { how: how.label() })
            .inc();
    }

    /// How many components were made ready `how` so far.
    pub fn artifacts(&self, how: Artifact) -> u64 {
        self.artifacts
            .get_or_create(&How { how: how.label() })
            .get()
    }

    /// Counts an instance made on the request path.
    pub fn cold_instance(&self) {
        self.cold_instances.inc();
    }

    /// Counts an outbound request.
    pub fn outbound(&self, what: Outbound) {
        self.outbound
            .get_or_create(&Outcome {
                result: what.label(),
            })
            .inc();
    }

    /// Counts a component load: published or refused.
    pub fn load(&self, published: bool) {
        let result = if published { "loaded" } else { "refused" };
        self.loads.get_or_create(&Outcome { result }).inc();
    }

    /// Counts one component call in flight while the value lives.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }
}

/// One call in flight, counted until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Artifact {
    fn label(self) -> &'static str {
        match self {
            Artifact::Compiled => "compiled",
            Artifact::Cached => "cached",
            Artifact::Embedded => "embedded",
            Artifact::Rejected => "rejected",
        }
    }
}

impl Outbound {
    fn label(self) -> &'static str {
        match self {
            Outbound::Answered => "answered",
            Outbound::Denied => "denied",
            Outbound::Failed => "failed",
        }
    }
}
