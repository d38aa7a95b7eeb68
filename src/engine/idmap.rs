//! Maps keyed by ids: a deploy's `seq`, a side, a series' id (itself a
//! hash of the series' attributes). Looked up for every histogram point
//! and span batch, they hash with one multiply per word instead of
//! SipHash. Nothing here is keyed by what a sender chooses freely but a
//! series' id, and the series a map holds are bounded by
//! `limits.max_series`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by ids (see the module docs).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The multiplier of rustc's FxHasher (an odd constant, bits well mixed).
const SEED: u64 = 0xf135_7aea_2e62_a9c5;

/// Hashes words of a key: each folded in with a rotate, a xor and one
/// multiply.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher {
    hash: u64,
}

impl IdHasher {
    #[inline]
    fn word(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut le = [0u8; 8];
            le.copy_from_slice(c);
            self.word(u64::from_le_bytes(le));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut le = [0u8; 8];
            le[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(le) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }

    /// The high bits of the product are the well-mixed ones; the map takes
    /// its bucket from the low bits.
    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::registry::Role;

    #[test]
    fn keys_of_ids_look_up_as_in_any_map() {
        let mut m: IdMap<(u64, u64, Role), u64> = IdMap::default();
        for series in 0..1000u64 {
            for seq in 0..3 {
                m.insert(
                    (series.wrapping_mul(0x9e37_79b9), seq, Role::Candidate),
                    series,
                );
                m.insert((series.wrapping_mul(0x9e37_79b9), seq, Role::Baseline), seq);
            }
        }
        assert_eq!(m.len(), 6000);
        assert_eq!(m[&(7u64.wrapping_mul(0x9e37_79b9), 2, Role::Candidate)], 7);
        assert_eq!(m[&(7u64.wrapping_mul(0x9e37_79b9), 2, Role::Baseline)], 2);
        assert!(!m.contains_key(&(7, 3, Role::Baseline)));
    }

    #[test]
    fn distinct_words_hash_apart() {
        let hash = |f: &dyn Fn(&mut IdHasher)| {
            let mut h = IdHasher::default();
            f(&mut h);
            h.finish()
        };
        assert_ne!(hash(&|h| h.write_u64(1)), hash(&|h| h.write_u64(2)));
        assert_ne!(hash(&|h| h.write(b"ab")), hash(&|h| h.write(b"ab\0")));
    }
}
