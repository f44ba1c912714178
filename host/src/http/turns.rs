//! Configuration writes of one tenant on this instance, one at a time.
//!
//! An update reads the stored configuration, has the validator apply the patch
//! and writes the result if nothing changed meanwhile (compare-and-swap).
//! Sixteen concurrent updates of one tenant left to race each other mostly
//! lose: each loser validates again, and the last waits through up to 32 tries
//! (the 200–700 ms tail and most of the CPU an update cost). Queued here, an
//! update of this instance runs once; the compare-and-swap stays for writers on
//! other instances sharing the store.
//!
//! Each queue also keeps the configuration last written through it
//! ([`Written`]): the next update of that tenant starts from it, without a
//! read of the store (a trip to the blocking pool and back), and its write
//! checks that the store still holds exactly that. At most one configuration
//! per queue is kept, whatever the number of tenants.
//!
//! An update gives its turn up as soon as its write is applied, before it is
//! durable (its answer waits for that): the next update of the tenant
//! starts from it while the store commits, and the store commits the
//! updates that followed meanwhile together. How many updates wait for or
//! hold a turn tells the store that more writes are coming.

use crate::store::{Busy, WriteTurn, Written};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use uuid::Uuid;

/// Independent queues; tenants share one only when their ids collide here.
const QUEUES: usize = 256;

/// The write queues, by tenant.
pub(crate) struct WriteTurns {
    queues: Box<[Arc<tokio::sync::Mutex<Option<Written>>>]>,
    /// Updates waiting for a turn or holding one.
    busy: Arc<AtomicUsize>,
}

impl Default for WriteTurns {
    fn default() -> Self {
        Self {
            queues: (0..QUEUES).map(|_| Arc::default()).collect(),
            busy: Arc::default(),
        }
    }
}

impl WriteTurns {
    /// `tenant`'s turn to write, first come first served; `None` if it did
    /// not come within `wait`.
    pub(crate) async fn take(&self, tenant: &Uuid, wait: Duration) -> Option<WriteTurn> {
        let queue = &self.queues[(tenant.as_u128() % QUEUES as u128) as usize];
        let busy = Busy::new(self.busy.clone());
        let guard = tokio::time::timeout(wait, queue.clone().lock_owned())
            .await
            .ok()?;
        Some(WriteTurn::new(guard, busy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_writer_per_tenant_and_a_bounded_wait() {
        let turns = WriteTurns::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let held = turns.take(&a, Duration::from_secs(1)).await.unwrap();
        assert_eq!(held.others(), 0);
        // Another tenant is not held up, and each turn counts the other.
        let other = turns.take(&b, Duration::from_secs(1)).await.unwrap();
        assert_eq!((held.others(), other.others()), (1, 1));
        drop(other);
        assert_eq!(held.others(), 0);
        // The same tenant waits, and gives up when told.
        assert!(turns.take(&a, Duration::from_millis(20)).await.is_none());
        // One that gave up waiting is not counted.
        assert_eq!(held.others(), 0);
        drop(held);
        assert!(turns.take(&a, Duration::from_millis(20)).await.is_some());
    }
}
