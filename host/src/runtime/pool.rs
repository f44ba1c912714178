//! A bounded pool of warm instances of a plugin component (validator, feature
//! gate), so a call does not pay for instantiation and the component's first-call
//! work (the validator compiles its schemas once per instance).
//!
//! Instances are tenant-affine: one that served a tenant is only ever reused for
//! that same tenant, so even a component that keeps state between calls (ours do
//! not; a tenant's or a third party's might) cannot leak it to another tenant.
//! A tenant without an idle instance of its own takes a *primed* one: made and
//! put through its first-call work with inputs that carry no tenant's data, off
//! the request path (a background refill keeps a few ready), so no request pays
//! for schema compilation. Idle and primed instances of all pools share one
//! budget ([`IdleBudget`]), which bounds their memory however many tenants there
//! are. An instance whose call failed (trap, deadline, memory cap) is dropped,
//! never returned.

use super::{PluginState, bindings, deadline_ticks, store_limits};
use crate::settings::Limits;
use crossbeam_queue::ArrayQueue;
use dashmap::DashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtx;

/// A pre-instantiated component that can make instances.
pub trait Instantiate: Send + Sync + 'static {
    /// The typed instance.
    type Instance: Send + 'static;
    /// Makes an instance in `store`.
    fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;

    /// Does an instance's first-call work (the validator compiles its schemas)
    /// with inputs that carry no tenant's data.
    fn prime(
        instance: &Self::Instance,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send;
}

impl Instantiate for bindings::validator::ValidatorComponentPre<PluginState> {
    type Instance = bindings::validator::ValidatorComponent;
    fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send {
        self.instantiate_async(store)
    }

    async fn prime(
        instance: &Self::Instance,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<()> {
        instance
            .tenant_gateway_validator_validator()
            .call_default_config(store)
            .await
            .map(drop)
    }
}

impl Instantiate for bindings::gate::FeatureGateComponentPre<PluginState> {
    type Instance = bindings::gate::FeatureGateComponent;
    fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send {
        self.instantiate_async(store)
    }

    async fn prime(
        instance: &Self::Instance,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<()> {
        use bindings::gate::exports::tenant_gateway::feature_gate::feature_gate::{
            TenantContext, Tier,
        };
        let ctx = TenantContext {
            tenant_id: String::new(),
            name: String::new(),
            tier: Tier::Basic,
        };
        instance
            .tenant_gateway_feature_gate_feature_gate()
            .call_list_features(store, &ctx, "{}")
            .await
            .map(drop)
    }
}

/// An instance with its own store, taken from a [`WarmPool`].
pub struct Warm<I> {
    /// The instance's store; its deadline is set on acquisition.
    pub store: Store<PluginState>,
    /// The typed instance.
    pub instance: I,
    uses: u32,
}

/// How many idle instances all pools may keep together.
#[derive(Debug)]
pub struct IdleBudget {
    left: AtomicUsize,
}

impl IdleBudget {
    /// A budget of `n` idle instances.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(n),
        })
    }

    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn give(&self) {
        self.left.fetch_add(1, Ordering::AcqRel);
    }
}

/// Primed instances a pool keeps ready.
const PRIMED: usize = 2;

static COLD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Instances made on the request path (no idle or primed one was ready) since
/// the process started.
pub fn cold_starts() -> u64 {
    COLD.load(Ordering::Relaxed)
}

/// Warm instances of one component: per tenant, and primed ones for anyone.
pub struct WarmPool<P: Instantiate> {
    inner: Arc<Inner<P>>,
}

struct Inner<P: Instantiate> {
    pre: P,
    engine: Engine,
    limits: Limits,
    /// Idle instances by the tenant (lower-case name, `""`: none) they served.
    idle: DashMap<Box<str>, ArrayQueue<Warm<P::Instance>>>,
    /// Primed instances that served no one.
    primed: ArrayQueue<Warm<P::Instance>>,
    refilling: AtomicBool,
    /// Instances this pool made on the request path.
    cold: std::sync::atomic::AtomicU64,
    per_tenant: usize,
    budget: Arc<IdleBudget>,
    max_uses: u32,
    deadline: u64,
}

impl<P: Instantiate> Drop for Inner<P> {
    fn drop(&mut self) {
        let kept = self.primed.len() + self.idle.iter().map(|q| q.len()).sum::<usize>();
        for _ in 0..kept {
            self.budget.give();
        }
    }
}

impl<P: Instantiate> Inner<P> {
    fn store(&self) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
                limits: store_limits(&self.limits),
            },
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store
    }

    /// A new instance in a new store, counted as having served `uses` calls.
    async fn instantiate(&self, uses: u32) -> wasmtime::Result<Warm<P::Instance>> {
        let mut store = self.store();
        store.set_epoch_deadline(self.deadline);
        let instance = self.pre.instantiate(&mut store).await?;
        Ok(Warm {
            store,
            instance,
            uses,
        })
    }

    /// Makes primed instances until [`PRIMED`] are ready or the budget is spent.
    async fn refill(&self) -> wasmtime::Result<()> {
        while self.primed.len() < PRIMED {
            if !self.budget.take() {
                break;
            }
            let made = async {
                let mut w = self.instantiate(0).await?;
                w.store.set_epoch_deadline(self.deadline);
                P::prime(&w.instance, &mut w.store).await?;
                wasmtime::Result::<_>::Ok(w)
            }
            .await;
            match made {
                Ok(w) => {
                    if self.primed.push(w).is_err() {
                        self.budget.give();
                        break;
                    }
                }
                Err(e) => {
                    self.budget.give();
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl<P: Instantiate> WarmPool<P> {
    /// A pool keeping at most `per_tenant` idle instances for each tenant, within
    /// `budget`; each instance serves at most `max_uses` calls.
    pub fn new(
        pre: P,
        engine: &Engine,
        limits: &Limits,
        per_tenant: usize,
        budget: Arc<IdleBudget>,
        max_uses: u32,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pre,
                engine: engine.clone(),
                limits: limits.clone(),
                idle: DashMap::new(),
                primed: ArrayQueue::new(PRIMED),
                refilling: AtomicBool::new(false),
                cold: std::sync::atomic::AtomicU64::new(0),
                per_tenant: per_tenant.max(1),
                budget,
                max_uses,
                deadline: deadline_ticks(limits),
            }),
        }
    }

    /// Instances this pool made on the request path.
    pub fn cold_starts(&self) -> u64 {
        self.inner.cold.load(Ordering::Relaxed)
    }

    /// Makes the primed instances ready (before a component is published, so its
    /// first requests are served warm).
    pub async fn prime(&self) -> wasmtime::Result<()> {
        self.inner.refill().await
    }

    /// Refills the primed instances in the background (one refill at a time).
    fn refill_later(&self) {
        if self.inner.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.refill().await {
                tracing::warn!(error = %e, "priming a component instance failed");
            }
            inner.refilling.store(false, Ordering::Release);
        });
    }

    /// Takes an idle instance that served `tenant` before, else a primed one, else
    /// makes a new one; its deadline starts now.
    pub async fn acquire(&self, tenant: &str) -> wasmtime::Result<Warm<P::Instance>> {
        let inner = &self.inner;
        let idle = inner.idle.get(tenant).and_then(|q| q.pop());
        let mut warm = match idle {
            Some(w) => {
                inner.budget.give();
                w
            }
            None => match inner.primed.pop() {
                Some(w) => {
                    inner.budget.give();
                    self.refill_later();
                    w
                }
                None => {
                    COLD.fetch_add(1, Ordering::Relaxed);
                    inner.cold.fetch_add(1, Ordering::Relaxed);
                    inner.instantiate(0).await?
                }
            },
        };
        warm.uses += 1;
        warm.store.set_epoch_deadline(inner.deadline);
        Ok(warm)
    }

    /// A new instance that [`WarmPool::release`] will not keep: what every call
    /// would cost without the pool.
    pub async fn fresh(&self) -> wasmtime::Result<Warm<P::Instance>> {
        self.inner.instantiate(self.inner.max_uses).await
    }

    /// Takes an instance of the kind asked for, to serve `tenant`.
    pub async fn get(
        &self,
        kind: super::Instance,
        tenant: &str,
    ) -> wasmtime::Result<Warm<P::Instance>> {
        match kind {
            super::Instance::Warm => self.acquire(tenant).await,
            super::Instance::Fresh => self.fresh().await,
        }
    }

    /// Returns an instance whose call for `tenant` succeeded, to serve that
    /// tenant again; it is dropped instead when it has served its share of calls,
    /// the tenant has enough idle ones, or the idle budget is spent.
    pub fn release(&self, tenant: &str, warm: Warm<P::Instance>) {
        let inner = &self.inner;
        if warm.uses >= inner.max_uses || !inner.budget.take() {
            return;
        }
        let pushed = match inner.idle.get(tenant) {
            Some(q) => q.push(warm).is_ok(),
            None => inner
                .idle
                .entry(tenant.into())
                .or_insert_with(|| ArrayQueue::new(inner.per_tenant))
                .push(warm)
                .is_ok(),
        };
        if !pushed {
            inner.budget.give();
        }
    }
}
