//! The session engine of one partition: `sessionize.engine.engine.SessionEngine` for a static
//! gap without the optional rules of SEMANTICS.md §6, rule for rule and in the same order, so
//! that it emits exactly the same changes. Names follow the Python code; read them side by side.
//!
//! Differences are of representation only:
//! - strings are integer codes (the Python wrapper keeps the dictionaries);
//! - with a static gap `expires == end + gap`, so it is not stored;
//! - sessions live in a slab (`Vec<Session>`, 144 bytes each) linked per key in creation order
//!   (the order of Python's per-key list), paths in a size-class arena (`path.rs`);
//! - the lazy heaps are deadline queues (`queue.rs`) holding the same deadlines; an entry names
//!   a slot, and a session merged away keeps its slot (a "zombie", Python's `alive == False`)
//!   until its entry comes out, so an entry never names a reused slot.

use std::collections::HashMap;

use crate::path::{PathArena, NO_BLOCK};
use crate::queue::{DeadlineQueue, Entry};
use crate::stamp::{earliest, latest, Stamp};

pub const NONE: u32 = u32::MAX;
const DEAD: u32 = u32::MAX;

const ENTRY: usize = 0;
const EXIT: usize = 1;
const REFERRER: usize = 2;
const CAMPAIGN: usize = 3;
const USER_AGENT: usize = 4;

const F_DIRTY: u8 = 1;
const F_EMITTED: u8 = 2;
const F_BOT: u8 = 4;
const F_ZOMBIE: u8 = 8;
/// a one-event session's path step is (start, created, type) and lives in the session itself,
/// `path_blk` holding the type code: no arena block for bounces
const F_INLINE: u8 = 16;

pub const TYPE_PAGE_VIEW: u8 = 1;
pub const TYPE_CONVERSION: u8 = 2;

/// Rejection kinds, with what `a` and `b` hold for the detail text.
pub const REJ_NO_KEY: u8 = 0;
/// late: touches the key's sealed session; `a` = its `created`
pub const REJ_LATE_SEALED: u8 = 1;
/// late: merged expires before the cut-off; `a` = merged expires, `b` = stream time
pub const REJ_LATE_CUTOFF: u8 = 2;

#[derive(Clone, Copy)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    pub created: u64,
    pub count: u64,
    pub revenue: f64,
    /// entry, exit, referrer, campaign, user agent
    pub stamps: [Stamp; 5],
    pub key: u32,
    /// next session of the same key (creation order), or the next free slot
    pub next: u32,
    pub page_views: u32,
    pub conversions: u32,
    pub path_blk: u32,
    pub path_len: u16,
    pub path_cls: u8,
    pub flags: u8,
}

const _: () = assert!(std::mem::size_of::<Session>() == 144);

#[derive(Clone, Copy)]
struct KeyState {
    head: u32,
    seal: u32,
}

/// A key's last closed session: what the candidate test reads (Python keeps the Session).
#[derive(Clone, Copy)]
struct Sealed {
    start: i64,
    expires: i64,
    created: u64,
}

pub struct Config {
    pub gap: i64,
    pub grace: Option<i64>,
    pub retention: i64,
    pub path_cap: usize,
    pub track_ids: bool,
    /// emit what a store needs to persist the engine's state (Python's `track_state`)
    pub track_state: bool,
}

pub struct Batch<'a> {
    pub key: &'a [i32],
    pub ts: &'a [i64],
    pub typ: &'a [i32],
    pub page: &'a [i32],
    pub referrer: &'a [i32],
    pub campaign: &'a [i32],
    pub ua: &'a [i32],
    pub revenue: &'a [f64],
    pub is_bot: &'a [bool],
    pub event_ref: Option<&'a [i32]>,
}

/// Session records, one column per field (derived fields are left to the caller).
#[derive(Default)]
pub struct Cols {
    pub key: Vec<i32>,
    pub created: Vec<u64>,
    pub start: Vec<i64>,
    pub end: Vec<i64>,
    pub count: Vec<u64>,
    pub page_views: Vec<u32>,
    pub conversions: Vec<u32>,
    pub revenue: Vec<f64>,
    pub entry: Vec<i32>,
    pub exit: Vec<i32>,
    pub referrer: Vec<i32>,
    pub campaign: Vec<i32>,
    pub user_agent: Vec<i32>,
    pub is_bot: Vec<bool>,
    pub path_offsets: Vec<u64>,
    pub path: Vec<i32>,
    /// each step's ts - start (Python's `path_ms`)
    pub path_ms: Vec<i64>,
    pub ids_offsets: Vec<u64>,
    pub ids: Vec<i32>,
    /// with track_state: the full state, not only the record (the `(ts, seq)` of the five
    /// stamps, five per session; the seq of every path step and the ts and seq of every id)
    pub state: Option<StateCols>,
}

#[derive(Default)]
pub struct StateCols {
    pub stamp_ts: Vec<i64>,
    pub stamp_seq: Vec<u64>,
    pub path_seq: Vec<u64>,
    pub ids_ts: Vec<i64>,
    pub ids_seq: Vec<u64>,
}

impl Cols {
    fn new(track_ids: bool) -> Cols {
        let mut c = Cols::default();
        c.path_offsets.push(0);
        if track_ids {
            c.ids_offsets.push(0);
        }
        c
    }

    fn with_state(track_ids: bool, track_state: bool) -> Cols {
        let mut c = Cols::new(track_ids);
        if track_state {
            c.state = Some(StateCols::default());
        }
        c
    }
}

/// How the engine's own state changed in a batch (Python's `StateDelta`), with track_state:
/// the upserts carry the sessions' full state; these say what left and which seals changed.
#[derive(Default)]
pub struct StateDelta {
    /// sessions merged away (emitted or not); the closed ones are the finals
    pub merged_key: Vec<i32>,
    pub merged_created: Vec<u64>,
    /// keys whose seal is now this one
    pub sealed_key: Vec<i32>,
    pub sealed_start: Vec<i64>,
    pub sealed_expires: Vec<i64>,
    pub sealed_created: Vec<u64>,
    /// keys whose seal was forgotten
    pub unsealed_key: Vec<i32>,
}

/// One open session handed to `Engine::restore`, stamps and steps as `(ts, seq, code)`.
pub struct RestoredSession<'a> {
    pub key: u32,
    pub created: u64,
    pub start: i64,
    pub end: i64,
    pub count: u64,
    pub page_views: u32,
    pub conversions: u32,
    pub revenue: f64,
    pub stamps: [Stamp; 5],
    pub is_bot: bool,
    pub path: &'a [Stamp],
    pub ids: &'a [Stamp],
}

#[derive(Default)]
pub struct Rejections {
    pub index: Vec<u64>,
    pub kind: Vec<u8>,
    pub a: Vec<i64>,
    pub b: Vec<i64>,
}

impl Rejections {
    #[inline]
    fn push(&mut self, index: usize, kind: u8, a: i64, b: i64) {
        self.index.push(index as u64);
        self.kind.push(kind);
        self.a.push(a);
        self.b.push(b);
    }
}

/// The net effect of one batch (Python's ChangeSet, in columns).
pub struct Output {
    pub upserts: Cols,
    pub finals: Cols,
    pub retracted_key: Vec<i32>,
    pub retracted_created: Vec<u64>,
    pub rejections: Rejections,
    pub stream_time: Option<i64>,
    pub counted: u64,
    pub state: Option<StateDelta>,
}

pub struct Engine {
    cfg: Config,
    extra: Option<i64>, // g_max + grace
    pub stream_time: Option<i64>,
    pub seq: u64,
    sessions: Vec<Session>,
    free_head: u32,
    pub open: usize,
    keys: Vec<KeyState>,
    seals: Vec<Sealed>,
    seal_free: u32,
    pub sealed_count: usize,
    closing: Option<DeadlineQueue>,
    unseal: DeadlineQueue,
    paths: PathArena,
    ids: HashMap<u32, Vec<Stamp>>,
    type_flags: Vec<u8>,
    pub received: u64,
    pub counted: u64,
    pub late: u64,
    pub no_key: u64,
    // the batch
    dirty: Vec<(u32, u64)>,
    finals: Cols,
    retracted_key: Vec<i32>,
    retracted_created: Vec<u64>,
    rej: Rejections,
    batch_counted: u64,
    merged_key: Vec<i32>,
    merged_created: Vec<u64>,
    resealed: Vec<u32>,
    cands: Vec<u32>,
    due: Vec<u32>,
    taken: Vec<Entry>,
    scratch: Vec<Stamp>,
}

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        let extra = cfg.grace.map(|g| cfg.gap + g);
        // buckets of a quarter gap; the ring spans what is open at once (or until unsealed)
        let width = (cfg.gap / 4).max(1);
        let closing = cfg.grace.map(|g| DeadlineQueue::new(width, 2 * cfg.gap + g));
        let unseal = DeadlineQueue::new(width, cfg.retention + cfg.gap);
        let paths = PathArena::new(cfg.path_cap);
        let finals = Cols::new(cfg.track_ids);
        Engine {
            merged_key: Vec::new(),
            merged_created: Vec::new(),
            resealed: Vec::new(),
            extra,
            stream_time: None,
            seq: 0,
            sessions: Vec::new(),
            free_head: NONE,
            open: 0,
            keys: Vec::new(),
            seals: Vec::new(),
            seal_free: NONE,
            sealed_count: 0,
            closing,
            unseal,
            paths,
            ids: HashMap::new(),
            type_flags: Vec::new(),
            received: 0,
            counted: 0,
            late: 0,
            no_key: 0,
            dirty: Vec::new(),
            finals,
            retracted_key: Vec::new(),
            retracted_created: Vec::new(),
            rej: Rejections::default(),
            batch_counted: 0,
            cands: Vec::new(),
            due: Vec::new(),
            taken: Vec::new(),
            scratch: Vec::new(),
            cfg,
        }
    }

    pub fn n_keys(&self) -> usize {
        self.keys.len()
    }

    pub fn add_keys(&mut self, n: usize) {
        let cap = self.keys.capacity();
        self.keys.resize(self.keys.len() + n, KeyState { head: NONE, seal: NONE });
        if self.keys.capacity() != cap {
            advise_huge(&self.keys);
        }
    }

    pub fn n_types(&self) -> usize {
        self.type_flags.len()
    }

    pub fn add_types(&mut self, flags: &[u8]) {
        self.type_flags.extend_from_slice(flags);
    }

    /// Python's `process`: every event in arrival order (`_accept_or_reject`).
    /// The caller has checked the codes and the ranges of ts and seq.
    pub fn process(&mut self, b: &Batch) {
        let gap = self.cfg.gap;
        let mut cands = std::mem::take(&mut self.cands);
        let n = b.key.len();
        for i in 0..n {
            // the loop is bound by two cache misses per event (the key's state, then its
            // session): fetch them a few events ahead
            if i + 32 < n {
                let k = b.key[i + 32];
                if k >= 0 {
                    prefetch(self.keys.as_ptr().wrapping_add(k as usize) as *const u8);
                }
            }
            if i + 12 < n {
                let k = b.key[i + 12];
                if k >= 0 {
                    let ks = self.keys[k as usize];
                    if ks.head != NONE {
                        let p = self.sessions.as_ptr().wrapping_add(ks.head as usize) as *const u8;
                        prefetch(p);
                        prefetch(p.wrapping_add(64));
                        prefetch(p.wrapping_add(128));
                    }
                    if ks.seal != NONE {
                        prefetch(self.seals.as_ptr().wrapping_add(ks.seal as usize) as *const u8);
                    }
                }
            }
            self.received += 1;
            let seq = self.seq;
            self.seq = seq + 1;
            let k = b.key[i];
            if k < 0 {
                self.no_key += 1;
                self.rej.push(i, REJ_NO_KEY, 0, 0);
                continue;
            }
            let k = k as u32;
            let ts = b.ts[i];
            let reach = ts + gap;
            let ks = self.keys[k as usize];

            // candidates: open sessions of the key whose [start, expires] touches [ts, reach]
            cands.clear();
            let mut merged_expires = reach;
            let mut cur = ks.head;
            while cur != NONE {
                let s = &self.sessions[cur as usize];
                let expires = s.end + gap;
                if s.start <= reach && ts <= expires {
                    cands.push(cur);
                    if expires > merged_expires {
                        merged_expires = expires;
                    }
                }
                cur = s.next;
            }
            if ks.seal != NONE {
                let z = &self.seals[ks.seal as usize];
                if z.start <= reach && ts <= z.expires {
                    self.late += 1;
                    self.rej.push(i, REJ_LATE_SEALED, z.created as i64, 0);
                    continue;
                }
            }
            if let (Some(t), Some(grace)) = (self.stream_time, self.cfg.grace) {
                if merged_expires < t - grace {
                    self.late += 1;
                    self.rej.push(i, REJ_LATE_CUTOFF, merged_expires, t);
                    continue;
                }
            }

            let survivor = if cands.is_empty() {
                self.new_session(k, seq, ts)
            } else {
                let mut best = cands[0];
                for &c in &cands[1..] {
                    let (s, t) = (&self.sessions[c as usize], &self.sessions[best as usize]);
                    if (s.start, s.created) < (t.start, t.created) {
                        best = c;
                    }
                }
                for &c in cands.iter() {
                    if c != best {
                        self.merge_away(c, best);
                    }
                }
                best
            };
            self.add(survivor, b, i, seq, ts);
            let s = &mut self.sessions[survivor as usize];
            if s.flags & F_DIRTY == 0 {
                s.flags |= F_DIRTY;
                self.dirty.push((survivor, s.created));
            }
            self.counted += 1;
            self.batch_counted += 1;
            let advance = match self.stream_time {
                None => true,
                Some(t) => ts > t,
            };
            if advance {
                // Python's `_advance`: close what is due, then forget seals past retention
                self.stream_time = Some(ts);
                if let Some(deadline) = self.closing.as_ref().and_then(|q| q.min()) {
                    if deadline < ts {
                        self.close_due();
                    }
                }
                if self.unseal.min().is_some_and(|d| d < ts - self.cfg.grace.unwrap_or(0)) {
                    self.unseal_due(ts);
                }
            }
        }
        self.cands = cands;
    }

    /// `lower` is a lower bound of the session's expiry (the first event's ts), for the closing
    /// queue.
    fn new_session(&mut self, key: u32, seq: u64, lower: i64) -> u32 {
        let s = Session {
            start: 0,
            end: 0,
            created: seq,
            count: 0,
            revenue: 0.0,
            stamps: [Stamp::ABSENT; 5],
            key,
            next: NONE,
            page_views: 0,
            conversions: 0,
            path_blk: NO_BLOCK,
            path_len: 0,
            path_cls: 0,
            flags: 0,
        };
        let slot = if self.free_head != NONE {
            let slot = self.free_head;
            self.free_head = self.sessions[slot as usize].next;
            self.sessions[slot as usize] = s;
            slot
        } else {
            let cap = self.sessions.capacity();
            self.sessions.push(s);
            if self.sessions.capacity() != cap {
                advise_huge(&self.sessions);
            }
            (self.sessions.len() - 1) as u32
        };
        // append to the key's list: creation order, as Python's list
        let head = self.keys[key as usize].head;
        if head == NONE {
            self.keys[key as usize].head = slot;
        } else {
            let mut cur = head;
            loop {
                let nxt = self.sessions[cur as usize].next;
                if nxt == NONE {
                    break;
                }
                cur = nxt;
            }
            self.sessions[cur as usize].next = slot;
        }
        self.open += 1;
        if let (Some(extra), Some(q)) = (self.extra, self.closing.as_mut()) {
            // a lower bound of the real deadline (expires >= ts); close_due re-files it lazily
            q.push(lower + extra, slot);
        }
        if self.cfg.track_ids {
            self.ids.insert(slot, Vec::new());
        }
        slot
    }

    /// Python's `Session.add`.
    #[inline]
    fn add(&mut self, slot: u32, b: &Batch, i: usize, seq: u64, ts: i64) {
        let s = &mut self.sessions[slot as usize];
        if s.flags & F_INLINE != 0 {
            materialize(&mut self.paths, s, slot);
        }
        if s.count == 0 {
            s.start = ts;
            s.end = ts;
        } else {
            if ts < s.start {
                s.start = ts;
            }
            if ts > s.end {
                s.end = ts;
            }
        }
        s.count += 1;
        let typ = b.typ[i];
        let tflags = if typ >= 0 { self.type_flags[typ as usize] } else { 0 };
        if tflags & TYPE_PAGE_VIEW != 0 {
            s.page_views += 1;
        }
        if tflags & TYPE_CONVERSION != 0 {
            s.conversions += 1;
            let r = b.revenue[i];
            if !r.is_nan() {
                s.revenue += r;
            }
        }
        let page = b.page[i];
        if page >= 0 {
            let here = Stamp::new(ts, seq, page);
            let e = s.stamps[ENTRY];
            if !e.present() || here < e {
                s.stamps[ENTRY] = here;
            }
            let x = s.stamps[EXIT];
            if !x.present() || here > x {
                s.stamps[EXIT] = here;
            }
        }
        for (field, code) in [(REFERRER, b.referrer[i]), (CAMPAIGN, b.campaign[i]), (USER_AGENT, b.ua[i])] {
            if code >= 0 {
                let here = Stamp::new(ts, seq, code);
                let cur = s.stamps[field];
                if !cur.present() || here < cur {
                    s.stamps[field] = here;
                }
            }
        }
        if b.is_bot[i] {
            s.flags |= F_BOT;
        }
        if self.cfg.path_cap > 0 {
            if s.count == 1 {
                s.flags |= F_INLINE;
                s.path_blk = typ as u32;
                s.path_len = 1;
            } else {
                let (c, blk, len) = self.paths.add(slot, s.path_cls, s.path_blk, s.path_len as usize,
                                                   Stamp::new(ts, seq, typ));
                s.path_cls = c;
                s.path_blk = blk;
                s.path_len = len as u16;
            }
        }
        if self.cfg.track_ids {
            let r = b.event_ref.map_or(-1, |r| r[i]);
            self.ids.get_mut(&slot).expect("ids of an open session").push(Stamp::new(ts, seq, r));
        }
    }

    /// Python's `_merge_away` (with `Session.absorb`).
    fn merge_away(&mut self, gone: u32, survivor: u32) {
        for slot in [gone, survivor] {
            let s = &mut self.sessions[slot as usize];
            if s.flags & F_INLINE != 0 {
                materialize(&mut self.paths, s, slot);
            }
        }
        let g = self.sessions[gone as usize];
        let s = &mut self.sessions[survivor as usize];
        if g.start < s.start {
            s.start = g.start;
        }
        if g.end > s.end {
            s.end = g.end;
        }
        s.count += g.count;
        s.page_views += g.page_views;
        s.conversions += g.conversions;
        s.revenue += g.revenue;
        s.stamps[ENTRY] = earliest(s.stamps[ENTRY], g.stamps[ENTRY]);
        s.stamps[EXIT] = latest(s.stamps[EXIT], g.stamps[EXIT]);
        for f in [REFERRER, CAMPAIGN, USER_AGENT] {
            s.stamps[f] = earliest(s.stamps[f], g.stamps[f]);
        }
        s.flags |= g.flags & F_BOT;
        if self.cfg.path_cap > 0 {
            let (c, blk, len) = self.paths.merge(
                survivor,
                (s.path_cls, s.path_blk, s.path_len as usize),
                (g.path_cls, g.path_blk, g.path_len as usize),
                &mut self.scratch,
            );
            s.path_cls = c;
            s.path_blk = blk;
            s.path_len = len as u16;
        }
        if self.cfg.track_ids {
            let moved = self.ids.remove(&gone).unwrap_or_default();
            self.ids.get_mut(&survivor).expect("ids of an open session").extend(moved);
        }
        self.unlink(gone);
        if self.cfg.track_state {
            self.merged_key.push(g.key as i32);
            self.merged_created.push(g.created);
        }
        if g.flags & F_EMITTED != 0 {
            self.retracted_key.push(g.key as i32);
            self.retracted_created.push(g.created);
        }
        if self.closing.is_some() {
            self.zombie(gone); // its closing entry is still queued
        } else {
            self.free_slot(gone, false);
        }
    }

    /// Dead, but named by a queued closing entry: freed when that entry comes out.
    fn zombie(&mut self, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        s.path_blk = NO_BLOCK;
        s.path_len = 0;
        s.key = DEAD;
        s.flags = F_ZOMBIE;
        self.open -= 1;
        if self.cfg.track_ids {
            self.ids.remove(&slot);
        }
    }

    fn free_zombie(&mut self, slot: u32) {
        let s = &mut self.sessions[slot as usize];
        s.flags = 0;
        s.next = self.free_head;
        self.free_head = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let s = self.sessions[slot as usize];
        let ks = &mut self.keys[s.key as usize];
        if ks.head == slot {
            ks.head = s.next;
            return;
        }
        let mut cur = ks.head;
        while cur != NONE {
            let nxt = self.sessions[cur as usize].next;
            if nxt == slot {
                self.sessions[cur as usize].next = s.next;
                return;
            }
            cur = nxt;
        }
        unreachable!("an open session is in its key's list");
    }

    fn free_slot(&mut self, slot: u32, release_path: bool) {
        let s = &mut self.sessions[slot as usize];
        if release_path && s.flags & F_INLINE == 0 {
            self.paths.release(s.path_cls, s.path_blk);
        }
        s.path_blk = NO_BLOCK;
        s.path_len = 0;
        s.key = DEAD;
        s.next = self.free_head;
        self.free_head = slot;
        self.open -= 1;
        if self.cfg.track_ids {
            self.ids.remove(&slot);
        }
    }

    /// Python's `_close_due`: close every session that no acceptable event can touch any more.
    fn close_due(&mut self) {
        let t = self.stream_time.expect("stream time");
        let extra = self.extra.expect("bounded grace");
        let gap = self.cfg.gap;
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        let mut taken = std::mem::take(&mut self.taken);
        taken.clear();
        let q = self.closing.as_mut().expect("bounded grace");
        q.take_below(t, &mut taken);
        for &(_, slot) in taken.iter() {
            let s = &self.sessions[slot as usize];
            if s.flags & F_ZOMBIE != 0 {
                self.free_zombie(slot); // merged away: Python's `not s.alive`
                continue;
            }
            let deadline = s.end + gap + extra;
            if deadline < t {
                due.push(slot);
            } else {
                self.closing.as_mut().expect("bounded grace").push(deadline, slot);
            }
        }
        self.taken = taken;
        // an order that depends only on the sessions (as Python's, for replays and restores)
        due.sort_unstable_by_key(|&slot| {
            let s = &self.sessions[slot as usize];
            (s.start, s.created)
        });
        for &slot in due.iter() {
            self.close(slot);
        }
        self.due = due;
    }

    /// Python's `_close`: final record, then the seal.
    fn close(&mut self, slot: u32) {
        self.unlink(slot);
        write_record(&self.sessions[slot as usize], &self.paths, self.ids.get(&slot), &mut self.finals,
                     &mut self.scratch);
        self.seal(slot);
        self.free_slot(slot, true);
    }

    /// Python's `_seal`: remember the key's last closed session.
    fn seal(&mut self, slot: u32) {
        let s = self.sessions[slot as usize];
        let expires = s.end + self.cfg.gap;
        let key = s.key as usize;
        let cur = self.keys[key].seal;
        let z = Sealed { start: s.start, expires, created: s.created };
        if cur == NONE {
            let idx = if self.seal_free != NONE {
                let idx = self.seal_free;
                self.seal_free = self.seals[idx as usize].created as u32;
                self.seals[idx as usize] = z;
                idx
            } else {
                self.seals.push(z);
                (self.seals.len() - 1) as u32
            };
            self.keys[key].seal = idx;
            self.sealed_count += 1;
        } else if expires >= self.seals[cur as usize].expires {
            self.seals[cur as usize] = z;
        } else {
            return;
        }
        if self.cfg.track_state {
            self.resealed.push(s.key);
        }
        self.unseal.push(expires + self.cfg.retention, s.key);
    }

    /// Python's `_unseal_due`: forget old seals of keys with nothing open.
    fn unseal_due(&mut self, t: i64) {
        let cutoff = t - self.cfg.grace.unwrap_or(0);
        let mut taken = std::mem::take(&mut self.taken);
        taken.clear();
        self.unseal.take_below(cutoff, &mut taken);
        for &(_, key) in taken.iter() {
            let ks = self.keys[key as usize];
            if ks.seal != NONE
                && ks.head == NONE
                && self.seals[ks.seal as usize].expires + self.cfg.retention < cutoff
            {
                self.seals[ks.seal as usize].created = self.seal_free as u64;
                self.seal_free = ks.seal;
                self.keys[key as usize].seal = NONE;
                self.sealed_count -= 1;
                if self.cfg.track_state {
                    self.resealed.push(key);
                }
            }
        }
        self.taken = taken;
    }

    /// Python's `flush`: end of input closes everything still open.
    pub fn flush(&mut self) {
        let mut remaining: Vec<u32> = (0..self.sessions.len() as u32)
            .filter(|&slot| self.sessions[slot as usize].key != DEAD)
            .collect();
        remaining.sort_unstable_by_key(|&slot| {
            let s = &self.sessions[slot as usize];
            (s.start, s.created)
        });
        for slot in remaining {
            self.close(slot);
        }
        if let Some(q) = self.closing.as_mut() {
            q.clear();
            for slot in 0..self.sessions.len() as u32 {
                if self.sessions[slot as usize].flags & F_ZOMBIE != 0 {
                    self.free_zombie(slot);
                }
            }
        }
    }

    /// Python's `_drain`: the batch's net changes; upserted sessions become `emitted`.
    pub fn drain(&mut self) -> Output {
        let track = self.cfg.track_ids;
        let mut upserts = Cols::with_state(track, self.cfg.track_state);
        let dirty = std::mem::take(&mut self.dirty);
        for &(slot, created) in dirty.iter() {
            let s = &mut self.sessions[slot as usize];
            if s.key == DEAD || s.created != created || s.flags & F_DIRTY == 0 {
                continue;
            }
            s.flags = (s.flags & !F_DIRTY) | F_EMITTED;
            write_record(&self.sessions[slot as usize], &self.paths, self.ids.get(&slot), &mut upserts,
                         &mut self.scratch);
        }
        self.dirty = dirty;
        self.dirty.clear();
        let sessions = &mut self.sessions;
        self.paths.compact(|owner, blk| sessions[owner as usize].path_blk = blk);
        let out = Output {
            upserts,
            finals: std::mem::replace(&mut self.finals, Cols::new(track)),
            retracted_key: std::mem::take(&mut self.retracted_key),
            retracted_created: std::mem::take(&mut self.retracted_created),
            rejections: std::mem::take(&mut self.rej),
            stream_time: self.stream_time,
            counted: self.batch_counted,
            state: if self.cfg.track_state { Some(self.state_delta()) } else { None },
        };
        self.batch_counted = 0;
        out
    }

    /// What left the engine's state in this batch, and the keys whose seal changed.
    fn state_delta(&mut self) -> StateDelta {
        let mut d = StateDelta {
            merged_key: std::mem::take(&mut self.merged_key),
            merged_created: std::mem::take(&mut self.merged_created),
            ..StateDelta::default()
        };
        let mut keys = std::mem::take(&mut self.resealed);
        keys.sort_unstable();
        keys.dedup();
        for &k in keys.iter() {
            let seal = self.keys[k as usize].seal;
            if seal == NONE {
                d.unsealed_key.push(k as i32);
            } else {
                let z = self.seals[seal as usize];
                d.sealed_key.push(k as i32);
                d.sealed_start.push(z.start);
                d.sealed_expires.push(z.expires);
                d.sealed_created.push(z.created);
            }
        }
        keys.clear();
        self.resealed = keys;
        d
    }

    /// Python's `SessionEngine.restore`, into a fresh engine: the open sessions (each key's in
    /// order of (start, created), as Python sorts them), the seals, stream time, the next
    /// arrival number and the counters. The caller has checked codes and ranges.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(&mut self, sessions: &[RestoredSession], seals: &[(u32, i64, i64, u64)],
                   stream_time: Option<i64>, seq: u64, counters: (u64, u64, u64, u64)) {
        let gap = self.cfg.gap;
        let mut order: Vec<usize> = (0..sessions.len()).collect();
        order.sort_unstable_by_key(|&i| (sessions[i].key, sessions[i].start, sessions[i].created));
        for i in order {
            let r = &sessions[i];
            // queued at its real deadline, as Python's restore does
            let slot = self.new_session(r.key, r.created, r.end + gap);
            let s = &mut self.sessions[slot as usize];
            s.start = r.start;
            s.end = r.end;
            s.count = r.count;
            s.page_views = r.page_views;
            s.conversions = r.conversions;
            s.revenue = r.revenue;
            s.stamps = r.stamps;
            s.flags = F_EMITTED | if r.is_bot { F_BOT } else { 0 };
            if self.cfg.path_cap > 0 {
                let inline = r.count == 1 && r.path.len() == 1
                    && r.path[0].ts() == r.start && r.path[0].seq() == r.created;
                if inline {
                    s.flags |= F_INLINE;
                    s.path_blk = r.path[0].code() as u32;
                    s.path_len = 1;
                } else {
                    let (mut c, mut blk, mut len) = (s.path_cls, s.path_blk, s.path_len as usize);
                    for &step in r.path.iter().take(self.cfg.path_cap) {
                        (c, blk, len) = self.paths.add(slot, c, blk, len, step);
                    }
                    let s = &mut self.sessions[slot as usize];
                    s.path_cls = c;
                    s.path_blk = blk;
                    s.path_len = len as u16;
                }
            }
            if self.cfg.track_ids {
                self.ids.insert(slot, r.ids.to_vec());
            }
        }
        for &(key, start, expires, created) in seals {
            let z = Sealed { start, expires, created };
            let idx = if self.seal_free != NONE {
                let idx = self.seal_free;
                self.seal_free = self.seals[idx as usize].created as u32;
                self.seals[idx as usize] = z;
                idx
            } else {
                self.seals.push(z);
                (self.seals.len() - 1) as u32
            };
            self.keys[key as usize].seal = idx;
            self.sealed_count += 1;
            self.unseal.push(expires + self.cfg.retention, key);
        }
        self.stream_time = stream_time;
        self.seq = seq;
        (self.received, self.counted, self.late, self.no_key) = counters;
    }

    /// Records of every open session, ordered by (start, created).
    pub fn open_records(&mut self) -> Cols {
        let mut slots: Vec<u32> = (0..self.sessions.len() as u32)
            .filter(|&slot| self.sessions[slot as usize].key != DEAD)
            .collect();
        slots.sort_unstable_by_key(|&slot| {
            let s = &self.sessions[slot as usize];
            (s.start, s.created)
        });
        let mut out = Cols::new(self.cfg.track_ids);
        for slot in slots {
            write_record(&self.sessions[slot as usize], &self.paths, self.ids.get(&slot), &mut out,
                         &mut self.scratch);
        }
        out
    }

    pub fn path_stats(&self) -> Vec<(usize, usize, usize, usize)> {
        self.paths.stats()
    }

    /// Bytes of the engine's main structures (capacities), by name.
    pub fn memory(&self) -> Vec<(&'static str, usize)> {
        use std::mem::size_of;
        vec![
            ("sessions", self.sessions.capacity() * size_of::<Session>()),
            ("keys", self.keys.capacity() * size_of::<KeyState>()),
            ("paths", self.paths.bytes()),
            ("closing_queue", self.closing.as_ref().map_or(0, |q| q.bytes())),
            ("seals", self.seals.capacity() * size_of::<Sealed>()),
            ("unseal_queue", self.unseal.bytes()),
            ("event_ids", self.ids.values().map(|v| v.capacity() * size_of::<Stamp>() + 48).sum()),
        ]
    }
}

/// Ask for transparent huge pages under a large table: the engine reads it at random, one
/// event at a time, and with 4 KiB pages nearly every read would also miss the TLB.
fn advise_huge<T>(v: &Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < 4 << 20 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (v.as_ptr() as usize).div_ceil(HUGE) * HUGE;
        let end = (v.as_ptr() as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: advice only, on whole pages inside the Vec's own allocation
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
}

/// A one-event session gets its second step (or merges): its inline step moves to the arena.
#[inline]
fn materialize(paths: &mut PathArena, s: &mut Session, slot: u32) {
    let step = Stamp::new(s.start, s.created, s.path_blk as i32);
    let (c, blk, len) = paths.add(slot, 0, NO_BLOCK, 0, step);
    s.path_cls = c;
    s.path_blk = blk;
    s.path_len = len as u16;
    s.flags &= !F_INLINE;
}

#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Python's `Session.to_record`, in columns: the fields that are not derived.
fn write_record(s: &Session, paths: &PathArena, ids: Option<&Vec<Stamp>>, cols: &mut Cols,
                scratch: &mut Vec<Stamp>) {
    cols.key.push(s.key as i32);
    cols.created.push(s.created);
    cols.start.push(s.start);
    cols.end.push(s.end);
    cols.count.push(s.count);
    cols.page_views.push(s.page_views);
    cols.conversions.push(s.conversions);
    cols.revenue.push(s.revenue);
    cols.entry.push(s.stamps[ENTRY].code());
    cols.exit.push(s.stamps[EXIT].code());
    cols.referrer.push(s.stamps[REFERRER].code());
    cols.campaign.push(s.stamps[CAMPAIGN].code());
    cols.user_agent.push(s.stamps[USER_AGENT].code());
    cols.is_bot.push(s.flags & F_BOT != 0);
    if s.flags & F_INLINE != 0 {
        cols.path.push(s.path_blk as i32);
        cols.path_ms.push(0);
        if let Some(st) = cols.state.as_mut() {
            st.path_seq.push(s.created);
        }
    } else {
        let steps = paths.steps(s.path_cls, s.path_blk, s.path_len as usize);
        for step in steps {
            cols.path.push(step.code());
            cols.path_ms.push(step.ts() - s.start);
        }
        if let Some(st) = cols.state.as_mut() {
            st.path_seq.extend(steps.iter().map(|step| step.seq()));
        }
    }
    cols.path_offsets.push(cols.path.len() as u64);
    if let Some(ids) = ids {
        scratch.clear();
        scratch.extend_from_slice(ids);
        scratch.sort_unstable();
        cols.ids.extend(scratch.iter().map(|st| st.code()));
        cols.ids_offsets.push(cols.ids.len() as u64);
        if let Some(st) = cols.state.as_mut() {
            st.ids_ts.extend(scratch.iter().map(|x| x.ts()));
            st.ids_seq.extend(scratch.iter().map(|x| x.seq()));
        }
    }
    if let Some(st) = cols.state.as_mut() {
        for stamp in s.stamps {
            st.stamp_ts.push(stamp.ts());
            st.stamp_seq.push(stamp.seq());
        }
    }
}
