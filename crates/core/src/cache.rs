//! An in-process cache with single flight: concurrent requests for one key wait for one fill,
//! and all of them get its outcome, a failure included (a failed fill is not run again by each
//! waiter in turn). A failure is not kept: the next request after it fills anew.
//!
//! The cache is bounded by entries and by bytes (each value weighed when its fill completes), and
//! evicts the oldest entries first, in amortised O(1): a queue of insertions, where entries
//! replaced since are skipped, compacted when it outgrows the map. Every operation holds the
//! lock for O(1) amortised work, never across a fill.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use crate::error::Error;

/// One fill and its outcome, shared by everyone who waited for it.
type Flight<V> = Arc<OnceCell<Result<V, Error>>>;

/// How much a cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most keys held.
    pub entries: usize,
    /// Most bytes held, as the cache's weigher counts them.
    pub bytes: usize,
}

/// The approximate bytes a key and its value hold (inline and on the heap).
pub type Weigher<K, V> = fn(&K, &V) -> usize;

struct Slot<V> {
    flight: Flight<V>,
    /// Which insertion this slot is (the queue names slots by it).
    seq: u64,
    /// Its weight, once its fill completed.
    bytes: usize,
}

struct Inner<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Insertions, oldest first; an entry whose slot was replaced or removed since is skipped.
    order: VecDeque<(K, u64)>,
    bytes: usize,
    next_seq: u64,
}

/// Values by key, each filled by at most one caller at a time, within [`Limits`].
pub struct FlightCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    limits: Limits,
    weigh: Weigher<K, V>,
}

impl<K: Eq + Hash + Clone, V: Clone> FlightCache<K, V> {
    /// A cache within `limits`, weighing entries with `weigh`.
    pub fn new(limits: Limits, weigh: Weigher<K, V>) -> Self {
        let limits = Limits { entries: limits.entries.max(1), bytes: limits.bytes };
        let inner = Inner { map: HashMap::new(), order: VecDeque::new(), bytes: 0, next_seq: 0 };
        Self { inner: Mutex::new(inner), limits, weigh }
    }

    /// The cached value of `key` if `fresh` says so, else the value `fill` makes (which is then
    /// cached). The flag says whether it came from the cache. Callers that arrive while a fill is
    /// running wait for it and share its outcome; a failed fill caches nothing.
    pub async fn get_or_fill<F, Fut>(&self, key: K, fresh: impl Fn(&V) -> bool, fill: F) -> Result<(V, bool), Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, Error>>,
    {
        let (flight, seq) = self.flight(&key, &fresh);
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
        match &outcome {
            Err(_) => self.remove_if(&key, seq),
            Ok(value) if filled_here => self.weighed(&key, seq, (self.weigh)(&key, value)),
            Ok(_) => {}
        }
        outcome.map(|value| (value, !filled_here))
    }

    /// Whether [`Self::get_or_fill`] would start no fill for `key`: a value `fresh` says will do
    /// is cached, or a fill is running. Never fills, never waits.
    pub fn holds(&self, key: &K, fresh: impl Fn(&V) -> bool) -> bool {
        let inner = self.lock();
        inner.map.get(key).is_some_and(|slot| match slot.flight.get() {
            None => true,
            Some(Ok(value)) => fresh(value),
            Some(Err(_)) => false,
        })
    }

    /// Drops the value of `key`.
    pub async fn invalidate(&self, key: &K) {
        let mut inner = self.lock();
        if let Some(slot) = inner.map.remove(key) {
            inner.bytes -= slot.bytes;
        }
    }

    /// How many keys, and how many bytes, it holds, and the length of its queue (tests of the
    /// bounds).
    #[cfg(test)]
    fn size(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes, inner.order.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The flight to wait for: the key's current one, unless it holds a stale value or a failure;
    /// else a new one, inserted (which may evict the oldest entries).
    fn flight(&self, key: &K, fresh: &impl Fn(&V) -> bool) -> (Flight<V>, u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.map.get(key) {
            let usable = match slot.flight.get() {
                None => true, // still filling: wait for it
                Some(Ok(v)) => fresh(v),
                Some(Err(_)) => false,
            };
            if usable {
                return (slot.flight.clone(), slot.seq);
            }
        }
        let flight: Flight<V> = Arc::new(OnceCell::new());
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(old) = inner.map.insert(key.clone(), Slot { flight: flight.clone(), seq, bytes: 0 }) {
            inner.bytes -= old.bytes;
        }
        inner.order.push_back((key.clone(), seq));
        self.evict(&mut inner);
        (flight, seq)
    }

    /// Records the weight of `key`'s value once filled (if the slot is still the one filled). A
    /// value heavier than the whole cache is not kept, and evicts nothing else.
    fn weighed(&self, key: &K, seq: u64, bytes: usize) {
        let mut inner = self.lock();
        if bytes > self.limits.bytes {
            drop(inner);
            self.remove_if(key, seq);
            return;
        }
        let Some(slot) = inner.map.get_mut(key).filter(|s| s.seq == seq) else { return };
        let before = std::mem::replace(&mut slot.bytes, bytes);
        inner.bytes = inner.bytes - before + bytes;
        self.evict(&mut inner);
    }

    /// Removes `key`'s slot if it is still insertion `seq`, so the next caller fills anew.
    fn remove_if(&self, key: &K, seq: u64) {
        let mut inner = self.lock();
        if inner.map.get(key).is_some_and(|s| s.seq == seq)
            && let Some(slot) = inner.map.remove(key)
        {
            inner.bytes -= slot.bytes;
        }
    }

    /// Evicts the oldest entries until within the limits (a slot being filled may go too: its
    /// waiters still share its outcome, which is then not kept), and compacts the queue when
    /// replaced entries make up most of it. Amortised O(1) per insertion.
    fn evict(&self, inner: &mut Inner<K, V>) {
        while inner.map.len() > self.limits.entries || inner.bytes > self.limits.bytes {
            let Some((key, seq)) = inner.order.pop_front() else { break };
            if inner.map.get(&key).is_some_and(|s| s.seq == seq)
                && let Some(slot) = inner.map.remove(&key)
            {
                inner.bytes -= slot.bytes;
            }
        }
        if inner.order.len() > 2 * inner.map.len() + 16 {
            let Inner { map, order, .. } = inner;
            order.retain(|(key, seq)| map.get(key).is_some_and(|s| s.seq == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cache(entries: usize) -> FlightCache<u32, u32> {
        FlightCache::new(Limits { entries, bytes: usize::MAX }, |_, _| 8)
    }

    /// `waiters` concurrent callers of one key whose fill takes 20 ms and gives `outcome`: what
    /// each got, and how many fills ran.
    async fn waiters(waiters: usize, outcome: Result<u32, Error>) -> (Vec<Result<u32, Error>>, usize) {
        let cache = Arc::new(cache(10));
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
        let cache = cache(10);
        assert!(cache.get_or_fill(1, |_| true, || async { Err(Error::UnknownApp(1)) }).await.is_err());
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(5) }).await.unwrap(), (5, false));
    }

    #[tokio::test]
    async fn stale_values_are_refilled_and_failures_not_cached() {
        let cache = cache(10);
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(1) }).await.unwrap(), (1, false));
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(2) }).await.unwrap(), (1, true));
        assert_eq!(cache.get_or_fill(1, |v| *v > 1, || async { Ok(3) }).await.unwrap(), (3, false));
        let err = cache.get_or_fill(2, |_| true, || async { Err(Error::UnknownApp(2)) }).await;
        assert!(err.is_err());
        assert_eq!(cache.size().0, 1, "a failed fill leaves no slot behind");
        cache.invalidate(&1).await;
        assert_eq!(cache.size(), (0, 0, 3), "nothing held (the queue forgets lazily)");
        assert_eq!(cache.get_or_fill(1, |_| true, || async { Ok(4) }).await.unwrap(), (4, false));
    }

    #[tokio::test]
    async fn the_oldest_entries_go_first_when_the_count_is_reached() {
        let cache = cache(100);
        for k in 0..10_000 {
            cache.get_or_fill(k, |_| true, || async move { Ok(k) }).await.unwrap();
        }
        let (entries, bytes, queued) = cache.size();
        assert_eq!((entries, bytes), (100, 800));
        assert!(queued <= 2 * 100 + 16, "the queue stays bounded: {queued}");
        // The newest hundred are the ones kept.
        assert_eq!(cache.get_or_fill(9_999, |_| true, || async { Ok(0) }).await.unwrap(), (9_999, true));
        assert_eq!(cache.get_or_fill(9_899, |_| true, || async { Ok(0) }).await.unwrap(), (0, false));
    }

    /// Values of 100 KB (an installation's 500 repository names) in a 1 MB cache: ten at most,
    /// whatever the entry limit.
    #[tokio::test]
    async fn the_bytes_held_are_bounded_too() {
        let cache: FlightCache<u32, Arc<Vec<u8>>> =
            FlightCache::new(Limits { entries: 10_000, bytes: 1 << 20 }, |_, v| 4 + v.len());
        for k in 0..1_000 {
            cache.get_or_fill(k, |_| true, || async { Ok(Arc::new(vec![0u8; 100_000])) }).await.unwrap();
            let (_, bytes, _) = cache.size();
            assert!(bytes <= 1 << 20, "{bytes} bytes after {k}");
        }
        let (entries, bytes, _) = cache.size();
        assert_eq!((entries, bytes), (10, 10 * 100_004));
    }

    /// A value heavier than the whole cache is handed out but not kept, and evicts nothing.
    #[tokio::test]
    async fn a_value_heavier_than_the_cache_is_not_kept_and_evicts_nothing() {
        let cache: FlightCache<u32, Arc<Vec<u8>>> =
            FlightCache::new(Limits { entries: 100, bytes: 1_000 }, |_, v| v.len());
        for k in 0..5 {
            cache.get_or_fill(k, |_| true, || async { Ok(Arc::new(vec![0u8; 100])) }).await.unwrap();
        }
        let (big, cached) = cache.get_or_fill(9, |_| true, || async { Ok(Arc::new(vec![0u8; 5_000])) }).await.unwrap();
        assert_eq!((big.len(), cached), (5_000, false));
        assert_eq!(cache.size().0, 5, "the five small ones stay");
        assert_eq!(cache.size().1, 500);
        // Invalidated while its fill runs: the weight is not recorded for a slot that is gone.
        let filled = cache.get_or_fill(
            7,
            |_| true,
            || async {
                cache.invalidate(&7).await;
                Ok(Arc::new(vec![0u8; 10]))
            },
        );
        assert_eq!(filled.await.unwrap().0.len(), 10);
        assert_eq!(cache.size().1, 500, "nothing counted for the invalidated slot");
    }

    /// Refreshing the same keys over and over does not grow the queue: it is compacted.
    #[tokio::test]
    async fn refreshes_do_not_pile_up() {
        let cache = cache(1_000);
        for round in 0..100u32 {
            for k in 0..50 {
                cache.get_or_fill(k, |_| false, || async move { Ok(round) }).await.unwrap();
            }
        }
        let (entries, _, queued) = cache.size();
        assert_eq!(entries, 50);
        assert!(queued <= 2 * 50 + 16, "{queued}");
    }
}
