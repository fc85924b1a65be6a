//! The store behind the cache: one moka cache weighed in bytes, holding answers and
//! what is known of keys (their `Vary`, or "not storable"), with per-slot lifetimes; the
//! paths unsafe requests invalidated; the calls in flight per key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use tokio::sync::watch;

use super::control::Keep;
use super::{Key, Keyed};
use crate::config::CacheSettings;

/// One stored answer.
#[derive(Debug)]
pub struct Entry {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) stored: Instant,
    pub(super) keep: Keep,
}

/// How usable an entry is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    Fresh,
    /// Stale, but within `stale_while_revalidate`.
    Revalidate,
    /// Stale, but within `stale_if_error`.
    IfError,
    Expired,
}

impl Entry {
    pub(super) fn since_stored(&self) -> Duration {
        self.stored.elapsed()
    }

    /// Current age: the backend's `Age` plus the time since it was stored.
    pub(super) fn age(&self) -> Duration {
        self.keep.age.saturating_add(self.since_stored())
    }

    /// Seconds of freshness left (negative once stale), for `Cache-Status: ttl`.
    pub(super) fn ttl(&self) -> i64 {
        let fresh = self.keep.fresh_for.as_secs_f64();
        let spent = self.since_stored().as_secs_f64();
        (fresh - spent).floor() as i64
    }

    pub(super) fn freshness(&self) -> Freshness {
        let since = self.since_stored();
        let fresh = self.keep.fresh_for;
        if since < fresh {
            Freshness::Fresh
        } else if since < fresh.saturating_add(self.keep.stale_while_revalidate) {
            Freshness::Revalidate
        } else if since < fresh.saturating_add(self.keep.stale_if_error) {
            Freshness::IfError
        } else {
            Freshness::Expired
        }
    }

    /// How long the store keeps it: fresh time plus the longer stale window.
    pub(super) fn lifetime(&self) -> Duration {
        let stale = self
            .keep
            .stale_while_revalidate
            .max(self.keep.stale_if_error);
        self.keep.fresh_for.saturating_add(stale)
    }

    pub(super) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 256
    }
}

/// What the store knows of a request's key: the backend's `Vary`, or that its answers
/// cannot be stored ("hit for pass": requests go straight on without waiting for each
/// other, and keep their conditional headers).
#[derive(Debug)]
struct Variants {
    names: Vec<HeaderName>,
    lifetime: Duration,
    pass: bool,
}

/// One slot of the store: answers and what is known of keys share one budget.
#[derive(Debug, Clone)]
enum Slot {
    Variants(Arc<Variants>),
    Entry(Arc<Entry>),
}

impl Slot {
    fn lifetime(&self) -> Duration {
        match self {
            Slot::Variants(v) => v.lifetime,
            Slot::Entry(e) => e.lifetime(),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Slot::Variants(v) => v.names.iter().map(|n| n.as_str().len() + 16).sum::<usize>() + 64,
            Slot::Entry(e) => e.weight(),
        }
    }
}

struct Lifetimes;

impl moka::Expiry<Key, Slot> for Lifetimes {
    fn expire_after_create(&self, _: &Key, slot: &Slot, _: Instant) -> Option<Duration> {
        Some(slot.lifetime())
    }
    fn expire_after_update(
        &self,
        _: &Key,
        slot: &Slot,
        _: Instant,
        left: Option<Duration>,
    ) -> Option<Duration> {
        match slot {
            // A `Vary` record lives as long as the longest-lived answer under it.
            Slot::Variants(v) if !v.pass => Some(left.map_or(v.lifetime, |l| l.max(v.lifetime))),
            _ => Some(slot.lifetime()),
        }
    }
}

/// How long "this key's answers cannot be stored" is remembered (at most the route's `ttl`).
const PASS_FOR: Duration = Duration::from_secs(10);
/// How long an invalidation of a path is remembered: longer than any entry lives (`ttl`
/// and each stale window are at most a day, by validation).
const MAX_LIFETIME: Duration = Duration::from_secs(3 * 86_400);

/// Counters, for the admin API and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Answered from the cache.
    pub hits: AtomicU64,
    /// Sent to the handler and stored.
    pub stored: AtomicU64,
    /// Sent to the handler (miss, or not storable).
    pub misses: AtomicU64,
    /// Stale answers served (while revalidating, or on error).
    pub stale: AtomicU64,
}

/// The one cache of a gateway.
pub struct Store {
    settings: CacheSettings,
    slots: moka::sync::Cache<Key, Slot>,
    /// Paths an unsafe request changed, and when (RFC 9111 §4.4): entries of these paths
    /// stored before are not used.
    invalidated: moka::sync::Cache<Arc<str>, Instant>,
    any_invalidated: AtomicBool,
    flights: Mutex<HashMap<Key, watch::Receiver<()>>>,
    /// Answers held: one more per insert, one less per removal of any cause.
    answers: Arc<AtomicI64>,
    /// Hit and miss counts.
    pub stats: Stats,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .field("slots", &self.slots.entry_count())
            .finish_non_exhaustive()
    }
}

/// Which entries a purge drops.
#[derive(Debug, Clone)]
pub enum Purge {
    /// Every entry.
    All,
    /// The entries of one route.
    Route(String),
    /// The entries of these routes.
    Routes(Vec<String>),
    /// Entries whose path is this path or lies below it.
    Prefix(String),
}

impl Purge {
    fn matches(&self, key: &Key) -> bool {
        match self {
            Purge::All => true,
            Purge::Route(id) => *key.route == **id,
            Purge::Routes(ids) => ids.iter().any(|id| *key.route == **id),
            Purge::Prefix(p) => {
                let path = &*key.path;
                path == p
                    || (path.starts_with(p.as_str())
                        && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
            }
        }
    }
}

/// What the store has under a request's key.
pub(super) enum Lookup {
    Nothing,
    Pass,
    Entry(Arc<Entry>),
}

impl Store {
    /// An empty store within `settings`.
    pub fn new(settings: CacheSettings) -> Store {
        let answers = Arc::new(AtomicI64::new(0));
        let removed = answers.clone();
        let slots = moka::sync::Cache::builder()
            .max_capacity(settings.max_size)
            .weigher(|k: &Key, slot: &Slot| {
                u32::try_from(k.weight() + slot.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(Lifetimes)
            .eviction_listener(move |_, slot: Slot, _| {
                if matches!(slot, Slot::Entry(_)) {
                    removed.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .build();
        let invalidated = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(MAX_LIFETIME)
            .build();
        Store {
            settings,
            slots,
            invalidated,
            any_invalidated: AtomicBool::new(false),
            flights: Mutex::new(HashMap::new()),
            answers,
            stats: Stats::default(),
        }
    }

    /// The bounds it was made with.
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// Drops the matching entries; returns how many answers were dropped.
    pub fn purge(&self, which: &Purge) -> u64 {
        let doomed: Vec<(Arc<Key>, bool)> = self
            .slots
            .iter()
            .filter(|(k, _)| which.matches(k))
            .map(|(k, slot)| (k, matches!(slot, Slot::Entry(_))))
            .collect();
        let mut dropped = 0;
        for (k, answer) in doomed {
            if self.slots.remove(&*k).is_some() && answer {
                dropped += 1;
            }
        }
        dropped
    }

    /// Stored answers and the bytes of everything kept (after pending maintenance, which
    /// also tells the count of removals).
    pub fn usage(&self) -> (u64, u64) {
        self.slots.run_pending_tasks();
        let answers = u64::try_from(self.answers.load(Ordering::Relaxed)).unwrap_or(0);
        (answers, self.slots.weighted_size())
    }

    /// After an unsafe request to `path` succeeded (RFC 9111 §4.4): its entries stored
    /// until now are not used any more. Nothing to do while the store is empty.
    pub fn invalidate_path(&self, path: &str) {
        // (moka's counts lag behind; the counter does not.)
        if self.stats.stored.load(Ordering::Relaxed) > 0 {
            self.invalidated.insert(Arc::from(path), Instant::now());
            self.any_invalidated.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn lookup(&self, keyed: &Keyed, headers: &HeaderMap) -> Lookup {
        let Some(Slot::Variants(variants)) = self.slots.get(&keyed.primary) else {
            return Lookup::Nothing;
        };
        if variants.pass {
            return Lookup::Pass;
        }
        let full = keyed.primary.entry(&variants.names, keyed, headers);
        let Some(Slot::Entry(entry)) = self.slots.get(&full) else {
            return Lookup::Nothing;
        };
        if self.any_invalidated.load(Ordering::Relaxed)
            && let Some(at) = self.invalidated.get(&keyed.primary.path)
            && at >= entry.stored
        {
            return Lookup::Nothing;
        }
        Lookup::Entry(entry)
    }

    /// Joins the call for `key`: the first caller leads (and holds the guard until its
    /// answer is stored or dropped); the others get a receiver that wakes when it ends.
    pub(super) fn join(self: &Arc<Self>, key: &Key) -> Result<Flight, watch::Receiver<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = flights.get(key) {
            return Err(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.clone(), rx);
        Ok(Flight {
            store: self.clone(),
            key: key.clone(),
            _tx: tx,
        })
    }

    pub(super) fn insert(&self, keyed: &Keyed, headers: &HeaderMap, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        let full = keyed.primary.entry(&entry.keep.vary, keyed, headers);
        let variants = Variants {
            names: entry.keep.vary.clone(),
            lifetime: entry.lifetime(),
            pass: false,
        };
        self.slots
            .insert(keyed.primary.clone(), Slot::Variants(Arc::new(variants)));
        self.slots.insert(full, Slot::Entry(entry.clone()));
        self.answers.fetch_add(1, Ordering::Relaxed);
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
        entry
    }

    /// Remembers for a while that the key's answers cannot be stored.
    pub(super) fn pass(&self, keyed: &Keyed, ttl: Duration) {
        let variants = Variants {
            names: Vec::new(),
            lifetime: ttl.min(PASS_FOR),
            pass: true,
        };
        self.slots
            .insert(keyed.primary.clone(), Slot::Variants(Arc::new(variants)));
    }
}

/// The lead of one call to the handler for a key; dropping it wakes the waiters.
pub struct Flight {
    store: Arc<Store>,
    key: Key,
    _tx: watch::Sender<()>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut flights = self.store.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_purge_at_segment_boundaries() {
        let key = |path: &str| Key {
            route: Arc::from("r"),
            path: Arc::from(path),
            rest: Arc::from(&b""[..]),
            entry: true,
        };
        let p = Purge::Prefix("/web/orders".into());
        assert!(p.matches(&key("/web/orders")));
        assert!(p.matches(&key("/web/orders/7")));
        assert!(!p.matches(&key("/web/ordersx")));
        assert!(Purge::Prefix("/web/".into()).matches(&key("/web/a")));
        assert!(Purge::Route("r".into()).matches(&key("/x")));
        assert!(!Purge::Route("s".into()).matches(&key("/x")));
    }
}
