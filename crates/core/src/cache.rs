//! An in-process cache with single flight: concurrent requests for one key wait for one fill.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Mutex as AsyncMutex;

use crate::error::Error;

type Slot<V> = Arc<AsyncMutex<Option<V>>>;

/// Values by key, each filled by at most one caller at a time. Entries that are no longer fresh
/// are swept when the cache grows past its capacity, so unused keys do not pile up.
pub(crate) struct FlightCache<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> FlightCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self { slots: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The cached value of `key` if `fresh` says so, else the value `fill` makes (which is then
    /// cached). The flag says whether it came from the cache. A failed fill caches nothing.
    pub(crate) async fn get_or_fill<F, Fut>(
        &self,
        key: K,
        fresh: impl Fn(&V) -> bool,
        fill: F,
    ) -> Result<(V, bool), Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, Error>>,
    {
        let slot = self.slot(&key, &fresh);
        let mut cached = slot.lock().await;
        if let Some(value) = cached.as_ref().filter(|v| fresh(v)) {
            return Ok((value.clone(), true));
        }
        match fill().await {
            Ok(value) => {
                *cached = Some(value.clone());
                Ok((value, false))
            }
            Err(err) => {
                *cached = None;
                drop(cached);
                self.forget_if_empty(&key, &slot);
                Err(err)
            }
        }
    }

    /// Drops the value of `key`.
    pub async fn invalidate(&self, key: &K) {
        let slot = self.slots.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned();
        if let Some(slot) = slot {
            *slot.lock().await = None;
        }
    }

    /// How many keys have a slot (for tests of the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn slot(&self, key: &K, fresh: &impl Fn(&V) -> bool) -> Slot<V> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.contains_key(key) && slots.len() >= self.capacity {
            // Sweep entries nobody is filling whose value is missing or stale.
            slots.retain(|_, slot| slot.try_lock().map(|v| v.as_ref().is_some_and(fresh)).unwrap_or(true));
        }
        slots.entry(key.clone()).or_default().clone()
    }

    fn forget_if_empty(&self, key: &K, slot: &Slot<V>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) && slot.try_lock().is_ok_and(|v| v.is_none()) {
            slots.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_fill() {
        let cache = Arc::new(FlightCache::<u32, u32>::new(10));
        let fills = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (cache, fills) = (cache.clone(), fills.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fill(
                            1,
                            |_| true,
                            || async {
                                fills.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                Ok(7)
                            },
                        )
                        .await
                        .unwrap()
                        .0
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(fills.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_values_are_refilled_and_failures_not_cached() {
        let cache = FlightCache::<u32, u32>::new(10);
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(1) }).await.unwrap(), (1, false));
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(2) }).await.unwrap(), (1, true));
        assert_eq!(cache.get_or_fill(1, |v| *v > 1, || async { Ok(3) }).await.unwrap(), (3, false));
        let err = cache.get_or_fill(2, |_| true, || async { Err(Error::UnknownApp(2)) }).await;
        assert!(err.is_err());
        assert_eq!(cache.len(), 1, "a failed fill leaves no slot behind");
        cache.invalidate(&1).await;
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(4) }).await.unwrap(), (4, false));
    }

    #[tokio::test]
    async fn the_cache_sweeps_stale_entries_at_capacity() {
        let cache = FlightCache::<u32, u32>::new(4);
        for k in 0..4 {
            cache.get_or_fill(k, |_| true, || async move { Ok(k) }).await.unwrap();
        }
        // Keys 0..4 hold values; with every value stale, a fifth key sweeps them.
        cache.get_or_fill(9, |_| false, || async { Ok(9) }).await.unwrap();
        assert_eq!(cache.len(), 1);
    }
}
