//! The capped, ordered path of every open session, in one arena of size classes.
//!
//! A session's path is the `path_cap` earliest `(ts, seq, type)` steps, sorted. Most sessions
//! are short, so giving each a fixed `path_cap` array would waste most of the memory: a path
//! lives in a block of the smallest size class that holds it (classes grow by about 1.5x, the
//! last one is exactly `path_cap`), and moves to the next class when it grows. Freed blocks
//! are chained through their first slot and reused; a class whose free blocks pile up (paths
//! that all grew past it) is compacted between batches: its last blocks move into the holes
//! (each block knows its owner session, which learns its new block) and the tail is returned.

use crate::stamp::Stamp;

pub const NO_BLOCK: u32 = u32::MAX;

struct Class {
    cap: usize,
    data: Vec<Stamp>,
    free: u32,
    /// the session slot owning each block (NO_BLOCK when free)
    owner: Vec<u32>,
    n_free: usize,
}

pub struct PathArena {
    classes: Vec<Class>,
    pub path_cap: usize,
}

impl PathArena {
    pub fn new(path_cap: usize) -> PathArena {
        let mut caps = Vec::new();
        let mut c = 1usize;
        while c < path_cap {
            caps.push(c);
            c = (c * 3 / 2).max(c + 1);
        }
        if path_cap > 0 {
            caps.push(path_cap);
        }
        let classes = caps
            .into_iter()
            .map(|cap| Class { cap, data: Vec::new(), free: NO_BLOCK, owner: Vec::new(), n_free: 0 })
            .collect();
        PathArena { classes, path_cap }
    }

    /// The smallest class holding `n` steps.
    #[inline]
    fn class_for(&self, n: usize) -> u8 {
        self.classes.iter().position(|c| c.cap >= n).expect("n <= path_cap") as u8
    }

    #[inline]
    fn alloc(&mut self, cls: u8, owner: u32) -> u32 {
        let c = &mut self.classes[cls as usize];
        if c.free != NO_BLOCK {
            let blk = c.free;
            c.free = c.data[blk as usize * c.cap].linked();
            c.owner[blk as usize] = owner;
            c.n_free -= 1;
            blk
        } else {
            let blk = (c.data.len() / c.cap) as u32;
            c.data.resize(c.data.len() + c.cap, Stamp::ABSENT);
            c.owner.push(owner);
            blk
        }
    }

    #[inline]
    pub fn release(&mut self, cls: u8, blk: u32) {
        if blk == NO_BLOCK {
            return;
        }
        let c = &mut self.classes[cls as usize];
        c.data[blk as usize * c.cap] = Stamp::link(c.free);
        c.free = blk;
        c.owner[blk as usize] = NO_BLOCK;
        c.n_free += 1;
    }

    /// Compact the classes whose free blocks exceed a third of their blocks (and 4096):
    /// `moved(owner, new_blk)` tells each moved path's session its new block.
    pub fn compact(&mut self, mut moved: impl FnMut(u32, u32)) {
        for c in self.classes.iter_mut() {
            let blocks = c.owner.len();
            if c.n_free < 4096 || c.n_free * 3 < blocks {
                continue;
            }
            let cap = c.cap;
            let (mut lo, mut hi) = (0usize, blocks);
            loop {
                while lo < hi && c.owner[lo] != NO_BLOCK {
                    lo += 1;
                }
                while hi > lo && c.owner[hi - 1] == NO_BLOCK {
                    hi -= 1;
                }
                if lo >= hi {
                    break;
                }
                // lo is a hole, hi - 1 a live block above it
                c.data.copy_within((hi - 1) * cap..hi * cap, lo * cap);
                c.owner[lo] = c.owner[hi - 1];
                c.owner[hi - 1] = NO_BLOCK;
                moved(c.owner[lo], lo as u32);
                lo += 1;
                hi -= 1;
            }
            c.data.truncate(lo * cap);
            c.owner.truncate(lo);
            c.data.shrink_to(lo * cap + lo * cap / 8);
            c.owner.shrink_to(lo + lo / 8);
            c.free = NO_BLOCK;
            c.n_free = 0;
        }
    }

    #[inline]
    pub fn steps(&self, cls: u8, blk: u32, len: usize) -> &[Stamp] {
        if len == 0 {
            return &[];
        }
        let c = &self.classes[cls as usize];
        let at = blk as usize * c.cap;
        &c.data[at..at + len]
    }

    #[inline]
    fn block_mut(&mut self, cls: u8, blk: u32) -> &mut [Stamp] {
        let c = &mut self.classes[cls as usize];
        let at = blk as usize * c.cap;
        &mut c.data[at..at + c.cap]
    }

    /// Make room for `need` steps in the block `(cls, blk)` holding `len`; returns the new block.
    #[inline]
    fn reserve(&mut self, owner: u32, cls: u8, blk: u32, len: usize, need: usize) -> (u8, u32) {
        if blk != NO_BLOCK && self.classes[cls as usize].cap >= need {
            return (cls, blk);
        }
        let ncls = self.class_for(need);
        let nblk = self.alloc(ncls, owner);
        if blk != NO_BLOCK {
            if len > 0 {
                let (src_cap, dst_cap) = (self.classes[cls as usize].cap, self.classes[ncls as usize].cap);
                let src = blk as usize * src_cap;
                let dst = nblk as usize * dst_cap;
                if cls == ncls {
                    unreachable!()
                }
                // two distinct classes: copy across vectors
                let (a, b) = if (cls as usize) < (ncls as usize) {
                    let (lo, hi) = self.classes.split_at_mut(ncls as usize);
                    (&lo[cls as usize], &mut hi[0])
                } else {
                    let (lo, hi) = self.classes.split_at_mut(cls as usize);
                    (&hi[0], &mut lo[ncls as usize])
                };
                b.data[dst..dst + len].copy_from_slice(&a.data[src..src + len]);
            }
            self.release(cls, blk);
        }
        (ncls, nblk)
    }

    /// Python's `_path_add`: keep the `path_cap` earliest steps, sorted. Returns the new
    /// `(cls, blk, len)`.
    #[inline]
    pub fn add(&mut self, owner: u32, cls: u8, blk: u32, len: usize, item: Stamp) -> (u8, u32, usize) {
        let cap = self.path_cap;
        if cap == 0 {
            return (cls, blk, len);
        }
        if len == 0 {
            let (c, b) = self.reserve(owner, cls, blk, 0, 1);
            self.block_mut(c, b)[0] = item;
            return (c, b, 1);
        }
        let last = self.steps(cls, blk, len)[len - 1];
        if item > last {
            if len < cap {
                let (c, b) = self.reserve(owner, cls, blk, len, len + 1);
                self.block_mut(c, b)[len] = item;
                return (c, b, len + 1);
            }
            return (cls, blk, len);
        }
        let pos = self.steps(cls, blk, len).partition_point(|x| *x < item);
        if len < cap {
            let (c, b) = self.reserve(owner, cls, blk, len, len + 1);
            let block = self.block_mut(c, b);
            block.copy_within(pos..len, pos + 1);
            block[pos] = item;
            (c, b, len + 1)
        } else {
            let block = self.block_mut(cls, blk);
            block.copy_within(pos..len - 1, pos + 1);
            block[pos] = item;
            (cls, blk, len)
        }
    }

    /// `sorted(a + b)[:path_cap]` into a's block; b's block is released.
    pub fn merge(
        &mut self,
        owner: u32,
        a: (u8, u32, usize),
        b: (u8, u32, usize),
        scratch: &mut Vec<Stamp>,
    ) -> (u8, u32, usize) {
        let (acls, ablk, alen) = a;
        let (bcls, bblk, blen) = b;
        if self.path_cap == 0 {
            return a;
        }
        if blen == 0 {
            self.release(bcls, bblk);
            return a;
        }
        let n = (alen + blen).min(self.path_cap);
        scratch.clear();
        {
            let x = self.steps(acls, ablk, alen);
            let y = self.steps(bcls, bblk, blen);
            let (mut i, mut j) = (0, 0);
            while scratch.len() < n {
                if j >= y.len() || (i < x.len() && x[i] < y[j]) {
                    scratch.push(x[i]);
                    i += 1;
                } else {
                    scratch.push(y[j]);
                    j += 1;
                }
            }
        }
        self.release(bcls, bblk);
        let (c, blk) = self.reserve(owner, acls, ablk, 0, n);
        self.block_mut(c, blk)[..n].copy_from_slice(scratch);
        (c, blk, n)
    }

    /// Per class: (steps per block, blocks, free blocks, capacity in steps).
    pub fn stats(&self) -> Vec<(usize, usize, usize, usize)> {
        self.classes.iter().map(|c| (c.cap, c.owner.len(), c.n_free, c.data.capacity())).collect()
    }

    /// Bytes held by the arena (capacity of every class).
    pub fn bytes(&self) -> usize {
        self.classes.iter().map(|c| c.data.capacity() * std::mem::size_of::<Stamp>() + c.owner.capacity() * 4).sum()
    }
}
