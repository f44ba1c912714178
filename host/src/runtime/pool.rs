//! A bounded pool of warm instances of a plugin component (validator, feature
//! gate), so a call does not pay for instantiation and the component's first-call
//! work (the validator compiles its schemas once per instance).
//!
//! Instances are tenant-affine: one that served a tenant is only ever reused for
//! that same tenant, so even a component that keeps state between calls (ours do
//! not; a tenant's or a third party's might) cannot leak it to another tenant.
//! Idle instances of all pools share one budget ([`IdleBudget`]), which bounds
//! their memory however many tenants there are. An instance whose call failed
//! (trap, deadline, memory cap) is dropped, never returned.

use super::{PluginState, bindings, deadline_ticks, store_limits};
use crate::settings::Limits;
use crossbeam_queue::ArrayQueue;
use dashmap::DashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

impl Instantiate for bindings::validator::ValidatorComponentPre<PluginState> {
    type Instance = bindings::validator::ValidatorComponent;
    fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send {
        self.instantiate_async(store)
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

/// Warm instances of one component, kept per tenant.
pub struct WarmPool<P: Instantiate> {
    pre: P,
    engine: Engine,
    limits: Limits,
    /// Idle instances by the tenant (lower-case name, `""`: none) they served.
    idle: DashMap<Box<str>, ArrayQueue<Warm<P::Instance>>>,
    per_tenant: usize,
    budget: Arc<IdleBudget>,
    max_uses: u32,
    deadline: u64,
}

impl<P: Instantiate> Drop for WarmPool<P> {
    fn drop(&mut self) {
        for q in self.idle.iter() {
            for _ in 0..q.len() {
                self.budget.give();
            }
        }
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
            pre,
            engine: engine.clone(),
            limits: limits.clone(),
            idle: DashMap::new(),
            per_tenant: per_tenant.max(1),
            budget,
            max_uses,
            deadline: deadline_ticks(limits),
        }
    }

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

    /// Takes an idle instance that served `tenant` before, or makes a new one;
    /// its deadline starts now.
    pub async fn acquire(&self, tenant: &str) -> wasmtime::Result<Warm<P::Instance>> {
        let idle = self.idle.get(tenant).and_then(|q| q.pop());
        let mut warm = match idle {
            Some(w) => {
                self.budget.give();
                w
            }
            None => self.instantiate(0).await?,
        };
        warm.uses += 1;
        warm.store.set_epoch_deadline(self.deadline);
        Ok(warm)
    }

    /// A new instance that [`WarmPool::release`] will not keep: what every call
    /// would cost without the pool.
    pub async fn fresh(&self) -> wasmtime::Result<Warm<P::Instance>> {
        self.instantiate(self.max_uses).await
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
        if warm.uses >= self.max_uses || !self.budget.take() {
            return;
        }
        let pushed = match self.idle.get(tenant) {
            Some(q) => q.push(warm).is_ok(),
            None => self
                .idle
                .entry(tenant.into())
                .or_insert_with(|| ArrayQueue::new(self.per_tenant))
                .push(warm)
                .is_ok(),
        };
        if !pushed {
            self.budget.give();
        }
    }
}
