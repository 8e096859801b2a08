//! The key dictionary (key string <-> dense code 0, 1, 2 ...), kept here rather than in a
//! Python dict: at a million keys a `dict[str, int]` with its int objects and the list of
//! strings costs ~90 bytes a key, this ~22 (the UTF-8 bytes, a 4-byte end offset, and a
//! 4-byte slot or two of an open-addressing table of codes).
//!
//! - `bytes`: every key's UTF-8, one after the other;
//! - `ends`: the low 32 bits of each key's end offset in `bytes`; `wraps` lists the codes at
//!   which the offset passes a multiple of 2^32 (empty below 4 GiB of key text);
//! - `table`: linear probing over codes (`EMPTY` = free), hashed with a randomly keyed SipHash
//!   (keys come from the input: no flooding), at most 3/4 full.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

const EMPTY: u32 = u32::MAX;

pub struct KeyVocab {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    wraps: Vec<u32>,
    table: Vec<u32>,
    hasher: RandomState,
}

impl KeyVocab {
    pub fn new() -> KeyVocab {
        KeyVocab { bytes: Vec::new(), ends: Vec::new(), wraps: Vec::new(), table: Vec::new(),
                   hasher: RandomState::new() }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    #[inline]
    fn end(&self, code: usize) -> usize {
        let hi = self.wraps.partition_point(|&w| w as usize <= code);
        ((hi as u64) << 32 | self.ends[code] as u64) as usize
    }

    /// The key string of `code` (< len()).
    #[inline]
    pub fn get(&self, code: usize) -> &[u8] {
        let start = if code == 0 { 0 } else { self.end(code - 1) };
        &self.bytes[start..self.end(code)]
    }

    #[inline]
    fn hash(&self, s: &[u8]) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The code of `s`, a new one (len()) when it was not seen yet.
    pub fn code(&mut self, s: &[u8]) -> u32 {
        if (self.len() + 1) * 4 > self.table.len() * 3 {
            self.grow();
        }
        let mask = self.table.len() - 1;
        let mut i = self.hash(s) as usize & mask;
        loop {
            let c = self.table[i];
            if c == EMPTY {
                break;
            }
            if self.get(c as usize) == s {
                return c;
            }
            i = (i + 1) & mask;
        }
        let code = self.len() as u32;
        assert!(code < EMPTY - 1, "more than 2^32 - 2 keys in one partition");
        self.table[i] = code;
        let before = self.bytes.len() as u64;
        self.bytes.extend_from_slice(s);
        let end = self.bytes.len() as u64;
        for _ in (before >> 32)..(end >> 32) {
            self.wraps.push(code);
        }
        self.ends.push(end as u32);
        code
    }

    fn grow(&mut self) {
        let cap = (self.table.len() * 2).max(64);
        self.table = vec![EMPTY; cap];
        let mask = cap - 1;
        for code in 0..self.len() {
            let mut i = self.hash(self.get(code)) as usize & mask;
            while self.table[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.table[i] = code as u32;
        }
    }

    /// Bytes held (capacities).
    pub fn bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 4 + self.wraps.capacity() * 4 + self.table.capacity() * 4
    }
}
