//! The store follower: this instance's directory kept in step with tenant
//! changes other instances write to a shared store, and expired deletions purged.

use crate::manage::{RESTORE_GRACE, publish, purge_expired};
use crate::store::StoreError;
use crate::tenancy::Shared;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Keeps this instance's directory in step with tenant changes other instances
/// make in a shared store, and purges expired deletions. Looks at the store's
/// change number every `interval`, and at once when `changed` is notified (a
/// shared store's change signal); a new number publishes the changed tenants.
pub(super) async fn follow_store(
    shared: Arc<Shared>,
    interval: std::time::Duration,
    changed: Arc<tokio::sync::Notify>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = std::time::Instant::now() - RESTORE_GRACE;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = changed.notified() => {}
        }
        let s = shared.clone();
        let sweep = last_sweep.elapsed() >= std::time::Duration::from_secs(600);
        if sweep {
            last_sweep = std::time::Instant::now();
        }
        let result = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            if sweep {
                purge_expired(&s, RESTORE_GRACE)?;
            }
            if s.store.change_seq()? != s.seen_seq.load(Ordering::Acquire) {
                publish(&s)?;
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "following tenant changes in the store failed")
            }
            Err(e) => tracing::warn!(error = %e, "following tenant changes panicked"),
        }
    }
}
