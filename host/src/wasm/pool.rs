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
//! are; when it is spent, the least recently used idle instance of any pool
//! makes room (so a busy gateway keeps its recent tenants warm and keeps
//! priming, instead of serving every tenant past the budget cold). An instance
//! whose call failed (trap, deadline, memory cap) is dropped, never returned.

use super::{PluginState, bindings, call_timeout, store_limits, yield_each_tick};
use crate::config::Limits;
use crossbeam_queue::ArrayQueue;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
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

impl<I> Warm<I> {
    /// Starts a call's deadline, `timeout` from now.
    fn start_call(&mut self, timeout: std::time::Duration) {
        self.store.data_mut().deadline = std::time::Instant::now() + timeout;
        self.store.set_epoch_deadline(1);
    }
}

/// A pool whose idle instances the budget can reclaim.
trait Evict: Send + Sync {
    /// When this pool's least recently used idle instance was last used
    /// ([`use_stamp`] order), if it has one.
    fn oldest(&self) -> Option<u64>;
    /// Drops that instance and gives its unit back to the budget; `false` if
    /// there was none any more.
    fn evict_oldest(&self) -> bool;
}

/// A number that grows with every release: the order instances were last used in.
fn use_stamp() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How many idle instances all pools may keep together, and the pools that
/// hold them (to reclaim the least recently used one when it is spent).
pub struct IdleBudget {
    left: AtomicUsize,
    pools: Mutex<Vec<Weak<dyn Evict>>>,
}

impl std::fmt::Debug for IdleBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleBudget")
            .field("left", &self.left.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl IdleBudget {
    /// A budget of `n` idle instances.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(n),
            pools: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Takes a unit, reclaiming the least recently used idle instance of any
    /// pool when none is left. Called with no pool's lock held.
    fn take_or_evict(&self) -> bool {
        for _ in 0..4 {
            if self.take() {
                return true;
            }
            let oldest = {
                let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
                pools.retain(|p| p.strong_count() > 0);
                pools
                    .iter()
                    .filter_map(|p| p.upgrade())
                    .filter_map(|p| p.oldest().map(|at| (at, p)))
                    .min_by_key(|(at, _)| *at)
                    .map(|(_, p)| p)
            };
            match oldest {
                // Another thread may take the unit first: try again.
                Some(pool) => {
                    pool.evict_oldest();
                }
                None => return false,
            }
        }
        false
    }

    fn give(&self) {
        self.left.fetch_add(1, Ordering::AcqRel);
    }

    fn register(&self, pool: Weak<dyn Evict>) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pool);
    }
}

/// A pool's idle instances by tenant, in the order they were last used.
struct Idle<I> {
    /// Each tenant's, oldest first, with their use stamps.
    by_tenant: HashMap<Box<str>, VecDeque<(u64, Warm<I>)>>,
    /// Every idle instance's stamp → its tenant, oldest first.
    order: BTreeMap<u64, Box<str>>,
}

impl<I> Idle<I> {
    fn len(&self) -> usize {
        self.order.len()
    }

    /// The tenant's most recently used idle instance.
    fn take(&mut self, tenant: &str) -> Option<Warm<I>> {
        let queue = self.by_tenant.get_mut(tenant)?;
        let (at, warm) = queue.pop_back()?;
        if queue.is_empty() {
            self.by_tenant.remove(tenant);
        }
        self.order.remove(&at);
        Some(warm)
    }

    /// Keeps `warm` for `tenant`; returns the tenant's oldest one when it has
    /// more than `per_tenant`.
    fn put(&mut self, tenant: &str, warm: Warm<I>, per_tenant: usize) -> Option<Warm<I>> {
        let at = use_stamp();
        let queue = self.by_tenant.entry(tenant.into()).or_default();
        queue.push_back((at, warm));
        self.order.insert(at, tenant.into());
        if queue.len() > per_tenant {
            let (old, w) = queue.pop_front()?;
            self.order.remove(&old);
            return Some(w);
        }
        None
    }

    /// The least recently used idle instance of any tenant.
    fn take_oldest(&mut self) -> Option<Warm<I>> {
        let (_, tenant) = self.order.pop_first()?;
        let queue = self.by_tenant.get_mut(&tenant)?;
        let (_, warm) = queue.pop_front()?;
        if queue.is_empty() {
            self.by_tenant.remove(&tenant);
        }
        Some(warm)
    }
}

/// Primed instances a pool keeps ready.
const PRIMED: usize = 2;

/// Warm instances of one component: per tenant, and primed ones for anyone.
pub struct WarmPool<P: Instantiate> {
    inner: Arc<Inner<P>>,
}

struct Inner<P: Instantiate> {
    pre: P,
    engine: Engine,
    limits: Limits,
    /// Idle instances by the tenant (lower-case name, `""`: none) they served.
    idle: Mutex<Idle<P::Instance>>,
    /// Primed instances that served no one.
    primed: ArrayQueue<Warm<P::Instance>>,
    refilling: AtomicBool,
    /// Instances this pool made on the request path.
    cold: std::sync::atomic::AtomicU64,
    per_tenant: usize,
    budget: Arc<IdleBudget>,
    max_uses: u32,
    /// How long one call may take.
    timeout: std::time::Duration,
    /// Where cold instances are counted.
    metrics: super::Metrics,
}

impl<P: Instantiate> Drop for Inner<P> {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |i| i.len());
        let kept = self.primed.len() + idle;
        for _ in 0..kept {
            self.budget.give();
        }
    }
}

impl<P: Instantiate> Evict for Inner<P> {
    fn oldest(&self) -> Option<u64> {
        self.idle().order.first_key_value().map(|(at, _)| *at)
    }

    fn evict_oldest(&self) -> bool {
        let gone = self.idle().take_oldest();
        let Some(gone) = gone else {
            return false;
        };
        drop(gone);
        self.budget.give();
        true
    }
}

impl<P: Instantiate> Inner<P> {
    fn idle(&self) -> std::sync::MutexGuard<'_, Idle<P::Instance>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
                limits: store_limits(&self.limits),
                deadline: std::time::Instant::now() + self.timeout,
            },
        );
        store.limiter(|s| &mut s.limits);
        yield_each_tick(&mut store, |s| s.deadline);
        store
    }

    /// A new instance in a new store, counted as having served `uses` calls.
    async fn instantiate(&self, uses: u32) -> wasmtime::Result<Warm<P::Instance>> {
        let mut store = self.store();
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
            if !self.budget.take_or_evict() {
                break;
            }
            let made = async {
                let mut w = self.instantiate(0).await?;
                w.start_call(self.timeout);
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
        metrics: super::Metrics,
    ) -> Self {
        let inner = Arc::new(Inner {
            pre,
            engine: engine.clone(),
            limits: limits.clone(),
            idle: Mutex::new(Idle {
                by_tenant: HashMap::new(),
                order: BTreeMap::new(),
            }),
            primed: ArrayQueue::new(PRIMED),
            refilling: AtomicBool::new(false),
            cold: std::sync::atomic::AtomicU64::new(0),
            per_tenant: per_tenant.max(1),
            budget,
            max_uses,
            timeout: call_timeout(limits),
            metrics,
        });
        let weak: Weak<Inner<P>> = Arc::downgrade(&inner);
        inner.budget.register(weak);
        Self { inner }
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

    /// Makes the primed instances in the background (one refill at a time; a
    /// failure is logged).
    pub fn prime_later(&self) {
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
        let idle = inner.idle().take(tenant);
        let mut warm = match idle {
            Some(w) => {
                inner.budget.give();
                w
            }
            None => match inner.primed.pop() {
                Some(w) => {
                    inner.budget.give();
                    self.prime_later();
                    w
                }
                None => {
                    inner.metrics.cold_instance();
                    inner.cold.fetch_add(1, Ordering::Relaxed);
                    inner.instantiate(0).await?
                }
            },
        };
        warm.uses += 1;
        warm.start_call(inner.timeout);
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
    /// tenant again (its most recently used idle one); it is dropped instead
    /// when it has served its share of calls. When the tenant then has more
    /// idle ones than it may keep, its oldest goes; when the budget is spent,
    /// the least recently used idle instance of any pool goes.
    pub fn release(&self, tenant: &str, warm: Warm<P::Instance>) {
        let inner = &self.inner;
        if warm.uses >= inner.max_uses || !inner.budget.take_or_evict() {
            return;
        }
        let surplus = inner.idle().put(tenant, warm, inner.per_tenant);
        if let Some(surplus) = surplus {
            drop(surplus);
            inner.budget.give();
        }
    }

    /// Primed instances ready now.
    pub fn primed_count(&self) -> usize {
        self.inner.primed.len()
    }

    /// Idle instances this pool keeps for `tenant`.
    #[cfg(test)]
    pub(crate) fn idle_of(&self, tenant: &str) -> usize {
        self.inner
            .idle()
            .by_tenant
            .get(tenant)
            .map_or(0, |q| q.len())
    }

    /// Idle instances this pool keeps now (not counting primed ones).
    pub fn idle_count(&self) -> usize {
        self.inner.idle().len()
    }
}
