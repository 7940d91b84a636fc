//! An in-process cache with single flight: concurrent requests for one key wait for one fill,
//! and all of them get its outcome, a failure included (a failed fill is not run again by each
//! waiter in turn). A failure is not kept: the next request after it fills anew.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use crate::error::Error;

/// One fill and its outcome, shared by everyone who waited for it.
type Flight<V> = Arc<OnceCell<Result<V, Error>>>;

/// Values by key, each filled by at most one caller at a time. Entries that are no longer fresh
/// are swept when the cache grows past its capacity, so unused keys do not pile up.
pub struct FlightCache<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> FlightCache<K, V> {
    /// A cache of at most about `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self { flights: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The cached value of `key` if `fresh` says so, else the value `fill` makes (which is then
    /// cached). The flag says whether it came from the cache. Callers that arrive while a fill is
    /// running wait for it and share its outcome; a failed fill caches nothing.
    pub async fn get_or_fill<F, Fut>(&self, key: K, fresh: impl Fn(&V) -> bool, fill: F) -> Result<(V, bool), Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, Error>>,
    {
        let flight = self.flight(&key, &fresh);
        if let Some(Ok(value)) = flight.get() {
            return Ok((value.clone(), true));
        }
        let mut filled_here = false;
        let outcome = flight
            .get_or_init(|| async {
                filled_here = true;
                fill().await
            })
            .await
            .clone();
        if outcome.is_err() {
            self.forget(&key, &flight);
        }
        outcome.map(|value| (value, !filled_here))
    }

    /// Drops the value of `key`.
    pub async fn invalidate(&self, key: &K) {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// How many keys have a slot (for tests of the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The flight to wait for: the key's current one, unless it holds a stale value or a failure.
    fn flight(&self, key: &K, fresh: &impl Fn(&V) -> bool) -> Flight<V> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        let usable = |f: &Flight<V>| match f.get() {
            None => true, // still filling: wait for it
            Some(Ok(v)) => fresh(v),
            Some(Err(_)) => false,
        };
        if let Some(current) = flights.get(key).filter(|f| usable(f)) {
            return current.clone();
        }
        if !flights.contains_key(key) && flights.len() >= self.capacity {
            // Sweep entries nobody is filling whose value is stale or failed.
            flights.retain(|_, f| f.get().is_none() || matches!(f.get(), Some(Ok(v)) if fresh(v)));
        }
        let flight: Flight<V> = Arc::new(OnceCell::new());
        flights.insert(key.clone(), flight.clone());
        flight
    }

    /// Forgets `flight` of `key` (if it is still the key's), so the next caller fills anew.
    fn forget(&self, key: &K, flight: &Flight<V>) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `waiters` concurrent callers of one key whose fill takes 20 ms and gives `outcome`: what
    /// each got, and how many fills ran.
    async fn waiters(waiters: usize, outcome: Result<u32, Error>) -> (Vec<Result<u32, Error>>, usize) {
        let cache = Arc::new(FlightCache::<u32, u32>::new(10));
        let fills = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..waiters)
            .map(|_| {
                let (cache, fills, outcome) = (cache.clone(), fills.clone(), outcome.clone());
                tokio::spawn(async move {
                    let fill = || async {
                        fills.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        outcome
                    };
                    cache.get_or_fill(1, |_| true, fill).await.map(|(v, _)| v)
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        (got, fills.load(Ordering::SeqCst))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_fill() {
        let (got, fills) = waiters(32, Ok(7)).await;
        assert!(got.iter().all(|r| matches!(r, Ok(7))));
        assert_eq!(fills, 1);
    }

    /// A failing fill with 100 waiters runs once, and every waiter gets its failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_share_one_failure() {
        let (got, fills) = waiters(100, Err(Error::UnknownApp(1))).await;
        assert!(got.iter().all(|r| matches!(r, Err(Error::UnknownApp(1)))));
        assert_eq!(fills, 1, "one fill for a hundred waiters");
        // The failure is not kept: the next caller fills anew.
        let cache = FlightCache::<u32, u32>::new(10);
        assert!(cache.get_or_fill(1, |_| true, || async { Err(Error::UnknownApp(1)) }).await.is_err());
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(5) }).await.unwrap(), (5, false));
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
