//! Per-replica cache of what every token request reads about its caller:
//! secret hashes, groups, enabled flag and policy.
//!
//! Issuing a token must not cost a handful of queries. Entries are dropped
//! whenever this replica changes a caller, secret or group (a generation
//! counter, so a load that raced a change is never kept), and otherwise
//! live for `keys.refresh_interval_secs` so changes made through another
//! replica apply within that time, like key changes do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Entries per map before a wholesale clear: bounds memory against
/// requests naming many distinct callers.
const MAX_ENTRIES: usize = 100_000;

pub struct CallerCache<C, P> {
    generation: AtomicU64,
    ttl: Duration,
    credentials: RwLock<HashMap<String, Entry<C>>>,
    policies: RwLock<HashMap<String, Entry<P>>>,
}

struct Entry<V> {
    generation: u64,
    loaded: Instant,
    value: Arc<V>,
}

/// A load in progress: remembers the generation it started under.
#[derive(Clone, Copy)]
pub struct Ticket(u64);

impl<C, P> CallerCache<C, P> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            generation: AtomicU64::new(0),
            ttl,
            credentials: RwLock::new(HashMap::new()),
            policies: RwLock::new(HashMap::new()),
        }
    }

    /// Forgets everything; call after committing a caller, secret or group
    /// change.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Take before reading the database; hand back with the result.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    pub fn credentials(&self, caller: &str) -> Option<Arc<C>> {
        self.get(&self.credentials, caller)
    }

    pub fn put_credentials(&self, ticket: Ticket, caller: &str, value: C) -> Arc<C> {
        self.put(&self.credentials, ticket, caller, value)
    }

    pub fn policy(&self, caller: &str) -> Option<Arc<P>> {
        self.get(&self.policies, caller)
    }

    pub fn put_policy(&self, ticket: Ticket, caller: &str, value: P) -> Arc<P> {
        self.put(&self.policies, ticket, caller, value)
    }

    fn get<V>(&self, map: &RwLock<HashMap<String, Entry<V>>>, caller: &str) -> Option<Arc<V>> {
        let current = self.generation.load(Ordering::Acquire);
        let map = map.read().expect("cache lock poisoned");
        map.get(caller)
            .filter(|e| e.generation == current && e.loaded.elapsed() < self.ttl)
            .map(|e| e.value.clone())
    }

    fn put<V>(
        &self,
        map: &RwLock<HashMap<String, Entry<V>>>,
        ticket: Ticket,
        caller: &str,
        value: V,
    ) -> Arc<V> {
        let value = Arc::new(value);
        let mut map = map.write().expect("cache lock poisoned");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            caller.to_owned(),
            Entry {
                generation: ticket.0,
                loaded: Instant::now(),
                value: value.clone(),
            },
        );
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_drops_entries_and_racing_loads() {
        let cache: CallerCache<u32, u32> = CallerCache::new(Duration::from_secs(60));
        let t = cache.ticket();
        cache.put_credentials(t, "a", 1);
        assert_eq!(cache.credentials("a").as_deref(), Some(&1));
        // A load that started before a change is stale once it lands.
        let racing = cache.ticket();
        cache.invalidate();
        cache.put_credentials(racing, "a", 2);
        assert_eq!(cache.credentials("a"), None);
        cache.put_credentials(cache.ticket(), "a", 3);
        assert_eq!(cache.credentials("a").as_deref(), Some(&3));
    }

    #[test]
    fn entries_expire() {
        let cache: CallerCache<u32, u32> = CallerCache::new(Duration::ZERO);
        cache.put_policy(cache.ticket(), "a", 1);
        assert_eq!(cache.policy("a"), None);
    }
}
