//! The process's one wasmtime `Engine` (pooling allocator, epoch
//! interruption), the per-store limits, and the epoch-deadline callback that
//! makes a guest yield its thread at every tick.

use super::*;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore};
use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Linear memory of a freed pooled slot kept resident (reset with memset).
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
/// Table space of a freed pooled slot kept resident.
const KEEP_RESIDENT_TABLE: usize = 256 << 10;

pub(super) fn engine(limits: &Limits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let instances = (limits.max_concurrent_component_calls as u32)
        .saturating_mul(3)
        .saturating_add(IDLE_BUDGET as u32 + 8);
    let memory = limits.component_memory_mib as usize * 1024 * 1024;
    pool.total_component_instances(instances)
        // A fiber stack is held by a store only while it runs a call (no
        // store here is re-entered), so stacks in use never outnumber
        // instances. wasmtime's default is 1,000, each with a guard page
        // made by an `mprotect` of its own when the pool is created: 7 % of a
        // warm start's CPU (`perf record` of the sample's start).
        .total_stacks(instances)
        .total_memories(instances * 2)
        .total_tables(instances * 2)
        .total_core_instances(instances * 8)
        .max_memory_size(memory)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        // A freed slot's memory is reset with memset up to these sizes and
        // with madvise beyond them. Each madvise costs a TLB shootdown (an
        // interrupt to every core), once per request for the config API
        // component, which is instantiated per request: keeping what such an
        // instance touches resident doubled config GET throughput on two cores
        // (6–8k to 12–16k req/s, `--config-get` bench, three runs each). The
        // cost is up to this much resident memory per slot once used.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), only the pages an
        // instance wrote are reset, not the whole kept-resident range: the
        // memset was 14% of the CPU of config GETs; with the scan, 7.7k to
        // 11.0k req/s on two cores (`scripts/bench-compare`, medians of 5).
        // Elsewhere the reset stays the memset. tests/all/outbound.rs checks
        // that a fresh instance finds nothing an earlier one wrote.
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = super::engine_config::compiler_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // `TENANT_GATEWAY_PERFMAP=1`: every component's functions are written to
    // /tmp/perf-<pid>.map, so `perf` names the guest code it samples.
    if std::env::var_os("TENANT_GATEWAY_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config)
}

pub(super) fn store_limits(limits: &Limits) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(limits.component_memory_mib as usize * 1024 * 1024)
        .instances(16)
        .trap_on_grow_failure(true)
        .build()
}

/// How long one component call may take (`Limits.ComponentTimeoutMs`).
pub(super) fn call_timeout(limits: &Limits) -> Duration {
    Duration::from_millis(limits.component_timeout_ms)
}

/// Makes the guest in `store` give its thread back to the executor at every
/// epoch tick, so a guest that computes without end holds a tokio worker for
/// one tick at a time, never for its whole deadline (on a 2-core machine two
/// such guests would otherwise stall every tenant), and trap, as a deadline,
/// once `deadline` of the store's data has passed: the deadline is wall-clock
/// time however often the guest was descheduled.
pub(super) fn yield_each_tick<T: 'static>(
    store: &mut WasmStore<T>,
    deadline: impl Fn(&T) -> std::time::Instant + Send + Sync + 'static,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |ctx| {
        if std::time::Instant::now() >= deadline(ctx.data()) {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            // tokio's own yield puts the task at the back of the run queue;
            // a plain self-wake lands in the worker's LIFO slot and the guest
            // resumes before anyone else (measured: another tenant's median
            // read 152 ms while four guests looped).
            Ok(wasmtime::UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        }
    });
}
