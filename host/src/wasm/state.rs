//! The data each kind of store carries: a plugin instance's (`PluginState`),
//! one config API request's (`ApiState`), and the memory cap both give wasmtime.

use super::apps::AppState;
use super::components::Slot;
use super::outbound;
use super::snapshot::{GatePlugin, Snapshot, ValidatorPlugin};
use crate::tenancy::Shared;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Store data of the plugin (validator, feature-gate) instances.
pub struct PluginState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    /// When the current call must have ended.
    pub(super) deadline: std::time::Instant,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Store data of one config API request.
pub struct ApiState {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) shared: Arc<Shared>,
    pub(super) outbound: outbound::Outbound,
    /// Who the request is from, as the change history records it.
    pub(super) principal: String,
    /// The tenant the request is for (lower-case name): whose policy modules serve it.
    pub(super) tenant: Option<String>,
    /// An update's turn to write the tenant's configuration, with what was
    /// written last through it.
    pub(super) turn: Option<crate::store::WriteTurn>,
    /// The slot of a plugin whose call failed, for the error answer.
    pub(super) failed: Arc<std::sync::OnceLock<String>>,
    /// Writes applied but maybe not durable yet: the answer waits for them.
    pub(super) durable: Arc<std::sync::Mutex<Vec<crate::store::Durable>>>,
}

impl ApiState {
    /// The validator serving this request's tenant.
    pub(super) fn validator(&self) -> Arc<ValidatorPlugin> {
        self.snapshot.validator_for(self.tenant.as_deref()).clone()
    }

    /// The feature gate serving this request's tenant.
    pub(super) fn gate(&self) -> Arc<GatePlugin> {
        self.snapshot.gate_for(self.tenant.as_deref()).clone()
    }

    /// The tenant whose warm instances serve this request's plugin calls.
    pub(super) fn tenant_key(&self) -> &str {
        self.tenant.as_deref().unwrap_or("")
    }

    /// Passes a plugin call's result on, remembering which plugin failed.
    pub(super) fn noted<T>(&self, slot: &Slot, r: wasmtime::Result<T>) -> wasmtime::Result<T> {
        if r.is_err() {
            let _ = self.failed.set(slot.to_string());
        }
        r
    }
}

impl WasiView for ApiState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ApiState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Store data with a memory cap.
pub(super) trait LimitedState {
    fn limits(&mut self) -> &mut dyn wasmtime::ResourceLimiter;
}

impl LimitedState for ApiState {
    fn limits(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }
}

impl LimitedState for AppState {
    fn limits(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }
}
