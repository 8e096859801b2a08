//! `(ts, seq, code)` packed into 16 bytes whose integer order is the tuple order.
//!
//! The Python engine keeps every "first"/"last" value and every path step as a tuple
//! `(ts, seq, value)` and compares tuples; `seq` (the arrival number) is unique in a partition,
//! so the comparison never reaches the value. Here the same triple is two `u64` words:
//!
//! ```text
//! hi = (ts + 2^47) << 16 | seq >> 32        (48 bits of biased ts, the top 16 bits of seq)
//! lo = (seq & 0xffff_ffff) << 32 | code    (the low 32 bits of seq, the value's code)
//! ```
//!
//! so `(hi, lo)` compares exactly like `(ts, seq, code)` as long as `-2^47 <= ts < 2^47`
//! (±4,400 years around 1970 in milliseconds) and `seq < 2^48`; the binding checks both.
//! A code below zero means "no value" (the Python `None`).

pub const TS_BIAS: i64 = 1 << 47;
/// Timestamps must lie in `[-TS_LIMIT, TS_LIMIT)`.
pub const TS_LIMIT: i64 = 1 << 47;
/// Arrival numbers must stay below this.
pub const SEQ_LIMIT: u64 = 1 << 48;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Stamp {
    hi: u64,
    lo: u64,
}

impl Stamp {
    /// No value (code -1). Never compared: callers test `present()` first.
    pub const ABSENT: Stamp = Stamp { hi: 0, lo: 0xffff_ffff };

    #[inline(always)]
    pub fn new(ts: i64, seq: u64, code: i32) -> Stamp {
        let t = (ts + TS_BIAS) as u64;
        Stamp { hi: (t << 16) | (seq >> 32), lo: (seq << 32) | (code as u32 as u64) }
    }

    #[inline(always)]
    pub fn code(self) -> i32 {
        self.lo as u32 as i32
    }

    #[inline(always)]
    pub fn ts(self) -> i64 {
        (self.hi >> 16) as i64 - TS_BIAS
    }

    #[inline(always)]
    pub fn seq(self) -> u64 {
        ((self.hi & 0xffff) << 32) | (self.lo >> 32)
    }

    #[inline(always)]
    pub fn present(self) -> bool {
        self.code() >= 0
    }

    /// Stored in a free block of the path arena: the next free block.
    #[inline(always)]
    pub fn link(next: u32) -> Stamp {
        Stamp { hi: 0, lo: next as u64 }
    }

    #[inline(always)]
    pub fn linked(self) -> u32 {
        self.lo as u32
    }
}

/// The earliest of two optional stamps (Python's `_earliest`).
#[inline(always)]
pub fn earliest(a: Stamp, b: Stamp) -> Stamp {
    if !a.present() {
        b
    } else if !b.present() || a <= b {
        a
    } else {
        b
    }
}

/// The latest of two optional stamps (Python's `_latest`).
#[inline(always)]
pub fn latest(a: Stamp, b: Stamp) -> Stamp {
    if !a.present() {
        b
    } else if !b.present() || a >= b {
        a
    } else {
        b
    }
}
