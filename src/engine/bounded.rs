//! A map that remembers at most a fixed number of keys, forgetting the
//! oldest first: the engine's memory of things already seen (retired
//! deploy ids, emitted command ids, Alertmanager deliveries) stays bounded
//! whatever the input.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug, Clone)]
pub struct Bounded<K, V = ()> {
    cap: usize,
    map: HashMap<K, V>,
    /// Insertion order, oldest first.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Bounded<K, V> {
        Bounded {
            cap: cap.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remembers `k` (a known key keeps its place and its value); returns
    /// whether it was new.
    pub fn insert(&mut self, k: K, v: V) -> bool {
        if self.map.contains_key(&k) {
            return false;
        }
        self.map.insert(k.clone(), v);
        self.order.push_back(k);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        true
    }
}

impl<K: Hash + Eq + Clone + std::borrow::Borrow<str>, V> Bounded<K, V> {
    /// Looks a string key up without allocating.
    pub fn get_str(&self, k: &str) -> Option<&V>
    where
        K: std::borrow::Borrow<str>,
    {
        self.map.get(k)
    }

    pub fn contains_str(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_first() {
        let mut b: Bounded<String, u32> = Bounded::new(2);
        assert!(b.insert("a".into(), 1));
        assert!(!b.insert("a".into(), 9), "known keys are not new");
        assert_eq!(b.get_str("a"), Some(&1));
        assert!(b.insert("b".into(), 2));
        assert!(b.insert("c".into(), 3));
        assert!(!b.contains_str("a"));
        assert!(b.contains_str("b") && b.contains_str("c"));
        assert_eq!(b.len(), 2);
    }
}
