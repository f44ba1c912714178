//! Per-tenant rate limits of the config API (GCRA, the algorithm behind most
//! token-bucket limiters): a quota of N per minute admits a burst of N, then one
//! request every 60/N seconds. The quota is read per call, so a settings reload
//! applies at once without losing the tenants' state.

use dashmap::DashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Configuration reads.
    Reads,
    /// Configuration updates.
    Updates,
    /// Feature queries.
    Features,
}

impl Class {
    /// Words for the 429 message.
    pub fn describe(self) -> &'static str {
        match self {
            Class::Reads => "configuration reads",
            Class::Updates => "configuration updates",
            Class::Features => "feature queries",
        }
    }
}

const WINDOW: u64 = 60_000_000_000;

/// The limiter: one "theoretical arrival time" per key (by default, per tenant
/// and class).
#[derive(Debug)]
pub struct RateLimiter<K: Eq + Hash = (Uuid, Class)> {
    epoch: Instant,
    cells: DashMap<K, AtomicU64>,
}

impl<K: Eq + Hash> Default for RateLimiter<K> {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            cells: DashMap::new(),
        }
    }
}

impl RateLimiter {
    /// Admits a request of `tenant` in `class` under `per_minute`, or says how
    /// long until one would be admitted.
    pub fn check(&self, tenant: Uuid, class: Class, per_minute: u32) -> Result<(), Duration> {
        self.check_at((tenant, class), per_minute, self.epoch.elapsed())
    }
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// Admits one event of `key` under `per_minute`, or says how long until one
    /// would be admitted. Keys whose quota is whole again are forgotten once
    /// there are more than `keep` of them, so keys an attacker makes up cannot
    /// grow the limiter without bound.
    pub fn check_key(&self, key: K, per_minute: u32, keep: usize) -> Result<(), Duration> {
        let now = self.epoch.elapsed();
        if self.cells.len() > keep {
            let now = now.as_nanos() as u64 + WINDOW;
            self.cells
                .retain(|_, tat| tat.load(Ordering::Acquire) > now);
        }
        self.check_at(key, per_minute, now)
    }

    fn check_at(&self, key: K, per_minute: u32, now: Duration) -> Result<(), Duration> {
        // Offset by one window so a fresh cell (0) is "long ago".
        let now = now.as_nanos() as u64 + WINDOW;
        let interval = WINDOW / u64::from(per_minute.max(1));
        let cell = match self.cells.get(&key) {
            Some(cell) => cell,
            None => self
                .cells
                .entry(key)
                .or_insert(AtomicU64::new(0))
                .downgrade(),
        };
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let next = tat.max(now) + interval;
            if next > now + WINDOW {
                return Err(Duration::from_nanos(next - WINDOW - now));
            }
            match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_of_the_quota_then_one_per_interval() {
        let l = RateLimiter::default();
        let t = Uuid::from_u128(1);
        let at = Duration::from_secs(5);
        for i in 0..100 {
            assert!(
                l.check_at((t, Class::Reads), 100, at).is_ok(),
                "request {i}"
            );
        }
        let wait = l.check_at((t, Class::Reads), 100, at).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        // Other classes and tenants are counted apart.
        assert!(l.check_at((t, Class::Features), 100, at).is_ok());
        assert!(
            l.check_at((Uuid::from_u128(2), Class::Reads), 100, at)
                .is_ok()
        );
        // After the interval, one more.
        let later = at + Duration::from_millis(600);
        assert!(l.check_at((t, Class::Reads), 100, later).is_ok());
        assert!(l.check_at((t, Class::Reads), 100, later).is_err());
        // A full minute restores the whole burst.
        let much_later = at + Duration::from_secs(61);
        for _ in 0..100 {
            assert!(l.check_at((t, Class::Reads), 100, much_later).is_ok());
        }
    }

    #[test]
    fn updates_quota_of_ten() {
        let l = RateLimiter::default();
        let t = Uuid::from_u128(1);
        let at = Duration::ZERO;
        assert!((0..10).all(|_| l.check_at((t, Class::Updates), 10, at).is_ok()));
        let wait = l.check_at((t, Class::Updates), 10, at).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
    }
}
