//! A deadline queue for the engine's two lazy heaps (closing and unsealing).
//!
//! The engine uses exactly two operations of Python's `heapq` there: "the smallest deadline"
//! (is a close pass due?) and "take every entry below `t`" (the pass itself, whose outcome does
//! not depend on the order the entries come out in). Thresholds never go back, and almost every
//! deadline pushed is at or above the last threshold; so a binary heap over all open sessions
//! (a cache miss per level per pop) can be replaced by buckets of `2^shift` ms in a ring:
//! pushing appends to a bucket, and only the bucket holding the minimum is a (small,
//! cache-resident) binary heap. Entries above the ring's span wait in `far`; entries pushed
//! below the last threshold wait in `low` and all leave with the next take. The multiset of
//! deadlines is the one Python's heap holds, so `min()` answers exactly as `heap[0][0]`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub type Entry = (i64, u32);
type Item = Reverse<Entry>;

pub struct DeadlineQueue {
    shift: u32,
    n: i64,
    ring: Vec<Vec<Item>>,
    bits: Vec<u64>,
    /// the ring holds bucket ids in [base, base + n); bucket id b sits at b & (n - 1)
    base: i64,
    /// the bucket with the smallest id, as a heap
    cur: BinaryHeap<Item>,
    cur_id: i64,
    /// bucket ids >= base + n
    far: Vec<Item>,
    far_min: i64,
    /// deadlines below `floor` (the last threshold): all leave with the next take
    low: Vec<Entry>,
    low_min: i64,
    floor: i64,
    /// entries in cur, ring and far
    len: usize,
}

impl DeadlineQueue {
    /// Buckets of about `width` ms, the ring spanning about `horizon` ms (bounded).
    pub fn new(width: i64, horizon: i64) -> DeadlineQueue {
        let shift = (63 - width.max(1).leading_zeros()).min(50);
        let buckets = ((horizon.max(1) >> shift) + 2).clamp(64, 1 << 16) as u64;
        let n = buckets.next_power_of_two() as i64;
        DeadlineQueue {
            shift,
            n,
            ring: (0..n).map(|_| Vec::new()).collect(),
            bits: vec![0; (n as usize).div_ceil(64)],
            base: 0,
            cur: BinaryHeap::new(),
            cur_id: 0,
            far: Vec::new(),
            far_min: i64::MAX,
            low: Vec::new(),
            low_min: i64::MAX,
            floor: i64::MIN,
            len: 0,
        }
    }

    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.len + self.low.len()
    }

    /// The smallest deadline (Python's `heap[0][0]`).
    #[inline]
    pub fn min(&self) -> Option<i64> {
        let m = self.cur.peek().map(|r| r.0 .0);
        if self.low.is_empty() {
            m
        } else {
            Some(m.map_or(self.low_min, |m| m.min(self.low_min)))
        }
    }

    #[inline]
    pub fn push(&mut self, d: i64, v: u32) {
        if d < self.floor {
            self.low.push((d, v));
            self.low_min = self.low_min.min(d);
            return;
        }
        let b = d >> self.shift;
        if self.len == 0 {
            self.base = b;
            self.cur_id = b;
            self.cur.push(Reverse((d, v)));
            self.len = 1;
            return;
        }
        self.len += 1;
        if b == self.cur_id {
            self.cur.push(Reverse((d, v)));
            return;
        }
        if b < self.base {
            self.rebase_down(b);
        }
        if b < self.cur_id {
            // a new smallest bucket: the current one goes back to the ring (or far)
            let old_id = self.cur_id;
            let old = std::mem::take(&mut self.cur).into_vec();
            self.place_all(old_id, old);
            self.cur_id = b;
            self.cur.push(Reverse((d, v)));
            return;
        }
        self.place(b, Reverse((d, v)));
    }

    /// Move every entry with a deadline below `t` to `out` (in no particular order).
    pub fn take_below(&mut self, t: i64, out: &mut Vec<Entry>) {
        if !self.low.is_empty() {
            debug_assert!(self.low.iter().all(|e| e.0 < t));
            out.append(&mut self.low);
            self.low_min = i64::MAX;
        }
        loop {
            while let Some(&Reverse((d, v))) = self.cur.peek() {
                if d >= t {
                    break;
                }
                self.cur.pop();
                out.push((d, v));
                self.len -= 1;
            }
            if !self.cur.is_empty() || self.len == 0 {
                break;
            }
            self.load_next();
        }
        if t > self.floor {
            self.floor = t;
        }
        let tb = t >> self.shift;
        if self.len == 0 {
            self.base = tb;
        } else if tb > self.base {
            self.base = tb; // every entry left is >= t, every later push too (or goes to low)
            if self.far_min >> self.shift < self.base + self.n {
                self.pull_far();
            }
        }
    }

    pub fn clear(&mut self) {
        for p in 0..self.n as usize {
            self.ring[p].clear();
        }
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.cur.clear();
        self.far.clear();
        self.far_min = i64::MAX;
        self.low.clear();
        self.low_min = i64::MAX;
        self.len = 0;
    }

    pub fn bytes(&self) -> usize {
        let item = std::mem::size_of::<Item>();
        self.ring.iter().map(|b| b.capacity() * item + 24).sum::<usize>()
            + self.cur.capacity() * item
            + self.far.capacity() * item
            + self.low.capacity() * std::mem::size_of::<Entry>()
            + self.bits.capacity() * 8
    }

    #[inline]
    fn pos(&self, b: i64) -> usize {
        (b & (self.n - 1)) as usize
    }

    #[inline]
    fn place(&mut self, b: i64, item: Item) {
        if b < self.base + self.n {
            let p = self.pos(b);
            self.ring[p].push(item);
            self.bits[p >> 6] |= 1 << (p & 63);
        } else {
            self.far_min = self.far_min.min(item.0 .0);
            self.far.push(item);
        }
    }

    fn place_all(&mut self, b: i64, mut items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        if b < self.base + self.n {
            let p = self.pos(b);
            if self.ring[p].is_empty() {
                std::mem::swap(&mut self.ring[p], &mut items);
            } else {
                self.ring[p].append(&mut items);
            }
            self.bits[p >> 6] |= 1 << (p & 63);
        } else {
            for it in &items {
                self.far_min = self.far_min.min(it.0 .0);
            }
            self.far.append(&mut items);
        }
    }

    /// The ring must start at `b` < base: buckets that would fall off its end go to far.
    fn rebase_down(&mut self, b: i64) {
        let (old_base, n) = (self.base, self.n);
        for w in 0..self.bits.len() {
            let mut word = self.bits[w];
            while word != 0 {
                let p = (w << 6) + word.trailing_zeros() as usize;
                word &= word - 1;
                let id = old_base + ((p as i64 - old_base) & (n - 1));
                if id >= b + n {
                    let items = std::mem::take(&mut self.ring[p]);
                    self.bits[w] &= !(1 << (p & 63));
                    for it in &items {
                        self.far_min = self.far_min.min(it.0 .0);
                    }
                    self.far.extend(items);
                }
            }
        }
        self.base = b;
    }

    /// Far entries whose bucket now fits in the ring move into it.
    fn pull_far(&mut self) {
        let limit = self.base + self.n;
        let far = std::mem::take(&mut self.far);
        self.far_min = i64::MAX;
        let mut keep = Vec::new();
        for it in far {
            let b = it.0 .0 >> self.shift;
            if b == self.cur_id {
                self.cur.push(it);
            } else if b < limit {
                self.place(b, it);
            } else {
                self.far_min = self.far_min.min(it.0 .0);
                keep.push(it);
            }
        }
        self.far = keep;
    }

    /// `cur` is empty and entries remain: make the smallest bucket current.
    fn load_next(&mut self) {
        let from = (self.cur_id + 1).max(self.base);
        if let Some(id) = self.first_in_ring(from, self.base + self.n) {
            let p = self.pos(id);
            self.bits[p >> 6] &= !(1 << (p & 63));
            let mut spare = std::mem::take(&mut self.cur).into_vec();
            std::mem::swap(&mut spare, &mut self.ring[p]);
            self.cur = BinaryHeap::from(spare);
            self.cur_id = id;
            return;
        }
        // the ring is empty: the smallest bucket is in far
        let id = self.far_min >> self.shift;
        let far = std::mem::take(&mut self.far);
        self.far_min = i64::MAX;
        let mut keep = Vec::new();
        for it in far {
            if it.0 .0 >> self.shift == id {
                self.cur.push(it);
            } else {
                self.far_min = self.far_min.min(it.0 .0);
                keep.push(it);
            }
        }
        self.far = keep;
        self.cur_id = id;
    }

    /// The first non-empty ring bucket with an id in [from, to).
    fn first_in_ring(&self, from: i64, to: i64) -> Option<i64> {
        let mut id = from;
        while id < to {
            let p = self.pos(id);
            let word = self.bits[p >> 6] >> (p & 63);
            if word != 0 {
                let found = id + word.trailing_zeros() as i64;
                return if found < to { Some(found) } else { None };
            }
            id += 64 - (p & 63) as i64; // next word (positions wrap with ids: n is a multiple of 64)
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random pushes and takes against a plain multiset: the same minimum after every step and
    /// the same entries taken, including time jumps, pushes below the threshold and far buckets.
    #[test]
    fn matches_a_plain_multiset() {
        for seed in 0..300u64 {
            let mut rng = Lcg(seed);
            let width = 1 + rng.below(50) as i64;
            let horizon = rng.below(5000) as i64;
            let mut q = DeadlineQueue::new(width, horizon);
            let mut model: Vec<Entry> = Vec::new();
            let mut t: i64 = rng.below(1000) as i64 - 500;
            for step in 0..3000u32 {
                match rng.below(10) {
                    0..=5 => {
                        let d = match rng.below(8) {
                            0 => t - rng.below(100) as i64,           // below the threshold
                            1 => t + rng.below(1_000_000) as i64,      // far ahead
                            _ => t + rng.below(3 * horizon as u64 + 10) as i64,
                        };
                        q.push(d, step);
                        model.push((d, step));
                    }
                    6..=8 => {
                        t += match rng.below(10) {
                            0 => rng.below(100_000) as i64,
                            _ => rng.below(40) as i64,
                        };
                        let mut got = Vec::new();
                        q.take_below(t, &mut got);
                        let mut want: Vec<Entry> = model.iter().copied().filter(|e| e.0 < t).collect();
                        model.retain(|e| e.0 >= t);
                        got.sort_unstable();
                        want.sort_unstable();
                        assert_eq!(got, want, "seed {seed} step {step}");
                    }
                    _ => {
                        if rng.below(50) == 0 {
                            q.clear();
                            model.clear();
                        }
                    }
                }
                assert_eq!(q.min(), model.iter().map(|e| e.0).min(), "seed {seed} step {step}");
                assert_eq!(q.len(), model.len());
            }
        }
    }
}
