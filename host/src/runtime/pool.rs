//! A bounded pool of warm instances of a state-free component.
//!
//! Reuse is safe because the pooled components (validator, feature gate) keep no
//! state between calls that could leak from one tenant to another: their only
//! retained state is compiled schemas and the static catalog. An instance whose
//! call failed (trap, deadline, memory cap) is dropped, never returned.

use super::{PluginState, bindings, deadline_ticks, store_limits};
use crate::settings::Limits;
use crossbeam_queue::ArrayQueue;
use std::future::Future;
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

/// Warm instances of one component.
pub struct WarmPool<P: Instantiate> {
    pre: P,
    engine: Engine,
    limits: Limits,
    idle: ArrayQueue<Warm<P::Instance>>,
    max_uses: u32,
    deadline: u64,
}

impl<P: Instantiate> WarmPool<P> {
    /// A pool keeping at most `capacity` idle instances, each reused at most `max_uses` times.
    pub fn new(pre: P, engine: &Engine, limits: &Limits, capacity: usize, max_uses: u32) -> Self {
        Self {
            pre,
            engine: engine.clone(),
            limits: limits.clone(),
            idle: ArrayQueue::new(capacity.max(1)),
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

    /// Takes an idle instance or makes a new one; its deadline starts now.
    pub async fn acquire(&self) -> wasmtime::Result<Warm<P::Instance>> {
        let mut warm = match self.idle.pop() {
            Some(w) => w,
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

    /// Takes an instance of the kind asked for.
    pub async fn get(&self, kind: super::Instance) -> wasmtime::Result<Warm<P::Instance>> {
        match kind {
            super::Instance::Warm => self.acquire().await,
            super::Instance::Fresh => self.fresh().await,
        }
    }

    /// Returns an instance whose call succeeded; it is dropped instead when it has
    /// served its share of calls or the pool is full.
    pub fn release(&self, warm: Warm<P::Instance>) {
        if warm.uses < self.max_uses {
            let _ = self.idle.push(warm);
        }
    }
}
