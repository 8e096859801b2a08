//! `sessionize_core`: the compiled session engine behind `sessionize.engine.fast.FastEngine`.
//!
//! One `Core` per partition. Events go in as batches of NumPy columns of integer codes (the
//! Python wrapper keeps the small string dictionaries; the key dictionary, one entry per user,
//! lives here, `vocab.rs`, which also lets session ids be hashed here); the batch's net changes
//! come back as a dict of NumPy columns. The GIL is released while a batch is processed.

mod engine;
mod jsondecode;
mod path;
mod queue;
mod sid;
mod stamp;
mod vocab;

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::exceptions::PyTypeError;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use engine::{Batch, Cols, Config, Engine, Output, RestoredSession};
use stamp::Stamp;
use vocab::KeyVocab;

#[pyclass(module = "sessionize_core")]
struct Core {
    eng: Engine,
    partition: i64,
    gap: i64,
    grace: Option<i64>,
    keys: KeyVocab,
}

const LIMIT: i64 = 1 << 60;

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("column {name} must be C-contiguous")))
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (partition, gap_ms, grace_ms, seal_retention_ms, path_cap, track_event_ids,
                        track_state=false))]
    fn new(
        partition: i64,
        gap_ms: i64,
        grace_ms: Option<i64>,
        seal_retention_ms: i64,
        path_cap: usize,
        track_event_ids: bool,
        track_state: bool,
    ) -> PyResult<Core> {
        if !(0 < gap_ms && gap_ms < LIMIT) {
            return Err(PyValueError::new_err("gap_ms must be in (0, 2^60)"));
        }
        if let Some(g) = grace_ms {
            if !(0..LIMIT).contains(&g) {
                return Err(PyValueError::new_err("grace_ms must be in [0, 2^60)"));
            }
        }
        if !(0..LIMIT).contains(&seal_retention_ms) {
            return Err(PyValueError::new_err("seal_retention_ms must be in [0, 2^60)"));
        }
        if path_cap > u16::MAX as usize {
            return Err(PyValueError::new_err("path_cap must be at most 65535"));
        }
        let eng = Engine::new(Config {
            gap: gap_ms,
            grace: grace_ms,
            retention: seal_retention_ms,
            path_cap,
            track_ids: track_event_ids,
            track_state,
        });
        Ok(Core { eng, partition, gap: gap_ms, grace: grace_ms, keys: KeyVocab::new() })
    }

    /// The code of one key (Python's `Vocab.code`): a new code for a key not seen yet; -1 for
    /// None, "" or another falsy value.
    fn key_code(&mut self, value: &Bound<'_, PyAny>) -> PyResult<i32> {
        let c = self.code_of(value)?;
        self.sync_keys();
        Ok(c)
    }

    /// The codes of an iterable of keys, as an int32 array (new codes for keys not seen yet).
    fn encode_keys<'py>(&mut self, py: Python<'py>, values: &Bound<'py, PyAny>)
                        -> PyResult<Bound<'py, numpy::PyArray1<i32>>> {
        let mut out: Vec<i32> = Vec::new();
        let res = if let Ok(list) = values.cast::<PyList>() {
            out.reserve(list.len());
            list.iter().try_for_each(|v| self.code_of(&v).map(|c| out.push(c)))
        } else {
            values.try_iter()?.try_for_each(|v| self.code_of(&v?).map(|c| out.push(c)))
        };
        self.sync_keys(); // the codes handed out so far exist even when a value was refused
        res?;
        Ok(out.into_pyarray(py))
    }

    /// The key string of a code.
    fn key_string(&self, code: i64) -> PyResult<String> {
        if code < 0 || code as usize >= self.keys.len() {
            return Err(PyValueError::new_err(format!("unknown key code {code}")));
        }
        Ok(String::from_utf8(self.keys.get(code as usize).to_vec()).expect("keys are UTF-8"))
    }

    /// Append event types: one byte of flags each (1 = page view, 2 = conversion).
    fn add_types(&mut self, flags: Vec<u8>) {
        self.eng.add_types(&flags);
    }

    #[getter]
    fn n_keys(&self) -> usize {
        self.eng.n_keys()
    }

    #[getter]
    fn n_types(&self) -> usize {
        self.eng.n_types()
    }

    /// Sessionize one batch, in arrival order; returns its net changes (a dict of columns).
    #[pyo3(signature = (key, ts, typ, page, referrer, campaign, ua, revenue, is_bot, event_ref=None))]
    #[allow(clippy::too_many_arguments)]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        key: PyReadonlyArray1<'py, i32>,
        ts: PyReadonlyArray1<'py, i64>,
        typ: PyReadonlyArray1<'py, i32>,
        page: PyReadonlyArray1<'py, i32>,
        referrer: PyReadonlyArray1<'py, i32>,
        campaign: PyReadonlyArray1<'py, i32>,
        ua: PyReadonlyArray1<'py, i32>,
        revenue: PyReadonlyArray1<'py, f64>,
        is_bot: PyReadonlyArray1<'py, bool>,
        event_ref: Option<PyReadonlyArray1<'py, i32>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ev_ref = match &event_ref {
            Some(a) => Some(slice(a, "event_ids")?),
            None => None,
        };
        let b = Batch {
            key: slice(&key, "key")?,
            ts: slice(&ts, "ts")?,
            typ: slice(&typ, "type")?,
            page: slice(&page, "page")?,
            referrer: slice(&referrer, "referrer")?,
            campaign: slice(&campaign, "campaign")?,
            ua: slice(&ua, "user_agent")?,
            revenue: slice(&revenue, "revenue")?,
            is_bot: slice(&is_bot, "is_bot")?,
            event_ref: ev_ref,
        };
        let n = b.key.len();
        let lens = [b.ts.len(), b.typ.len(), b.page.len(), b.referrer.len(), b.campaign.len(), b.ua.len(),
                    b.revenue.len(), b.is_bot.len(), ev_ref.map_or(n, |r| r.len())];
        if lens.iter().any(|&l| l != n) {
            return Err(PyValueError::new_err("all columns must have the same length"));
        }
        let (n_keys, n_types) = (self.eng.n_keys() as i64, self.eng.n_types() as i64);
        if b.key.iter().any(|&k| k as i64 >= n_keys) {
            return Err(PyValueError::new_err("a key code has no key string (codes come from the engine's keys.encode)"));
        }
        if b.typ.iter().any(|&t| t as i64 >= n_types) {
            return Err(PyValueError::new_err("a type code has no type flags (add_types first)"));
        }
        if b.ts.iter().any(|&t| !(-stamp::TS_LIMIT..stamp::TS_LIMIT).contains(&t)) {
            return Err(PyValueError::new_err("ts out of the supported range [-2^47, 2^47) ms"));
        }
        if self.eng.seq + n as u64 >= stamp::SEQ_LIMIT {
            return Err(PyValueError::new_err("more than 2^48 events in one partition"));
        }
        let eng = &mut self.eng;
        let out = py.detach(move || {
            eng.process(&b);
            eng.drain()
        });
        output_dict(py, out)
    }

    /// Python's `SessionEngine.restore`, into this fresh core: open sessions in columns (five
    /// stamps each as `(ts, seq, code)`, paths and event ids cut by their offsets), the seals
    /// `(key, start, expires, created)`, stream time, the next arrival number and the counters
    /// `(received, counted, late, no_key)`.
    #[pyo3(signature = (stream_time, seq, counters, key, created, start, end, count, page_views,
                        conversions, revenue, is_bot, stamp_code, stamp_ts, stamp_seq,
                        path_offsets, path_code, path_ts, path_seq, ids_offsets, ids_code, ids_ts,
                        ids_seq, seal_key, seal_start, seal_expires, seal_created))]
    #[allow(clippy::too_many_arguments)]
    fn restore(
        &mut self,
        stream_time: Option<i64>,
        seq: u64,
        counters: (u64, u64, u64, u64),
        key: Vec<i64>,
        created: Vec<u64>,
        start: Vec<i64>,
        end: Vec<i64>,
        count: Vec<u64>,
        page_views: Vec<u32>,
        conversions: Vec<u32>,
        revenue: Vec<f64>,
        is_bot: Vec<bool>,
        stamp_code: Vec<i32>,
        stamp_ts: Vec<i64>,
        stamp_seq: Vec<u64>,
        path_offsets: Vec<usize>,
        path_code: Vec<i32>,
        path_ts: Vec<i64>,
        path_seq: Vec<u64>,
        ids_offsets: Vec<usize>,
        ids_code: Vec<i32>,
        ids_ts: Vec<i64>,
        ids_seq: Vec<u64>,
        seal_key: Vec<i64>,
        seal_start: Vec<i64>,
        seal_expires: Vec<i64>,
        seal_created: Vec<u64>,
    ) -> PyResult<()> {
        if self.eng.seq != 0 || self.eng.open != 0 || self.eng.sealed_count != 0 {
            return Err(PyValueError::new_err("restore needs a fresh core"));
        }
        let bad = |what: &str| Err(PyValueError::new_err(format!("restore: {what}")));
        let n = key.len();
        let same = [created.len(), start.len(), end.len(), count.len(), page_views.len(),
                    conversions.len(), revenue.len(), is_bot.len()];
        if same.iter().any(|&l| l != n) || stamp_code.len() != 5 * n || stamp_ts.len() != 5 * n
            || stamp_seq.len() != 5 * n {
            return bad("session columns of different lengths");
        }
        if path_offsets.len() != n + 1 || path_code.len() != path_ts.len()
            || path_seq.len() != path_code.len() || path_offsets[n] != path_code.len()
            || path_offsets.windows(2).any(|w| w[0] > w[1]) {
            return bad("path columns do not match their offsets");
        }
        let with_ids = !ids_offsets.is_empty();
        if with_ids && (ids_offsets.len() != n + 1 || ids_code.len() != ids_ts.len()
            || ids_seq.len() != ids_code.len() || ids_offsets[n] != ids_code.len()
            || ids_offsets.windows(2).any(|w| w[0] > w[1])) {
            return bad("event id columns do not match their offsets");
        }
        let m = seal_key.len();
        if seal_start.len() != m || seal_expires.len() != m || seal_created.len() != m {
            return bad("seal columns of different lengths");
        }
        let n_keys = self.eng.n_keys() as i64;
        if key.iter().chain(seal_key.iter()).any(|&k| !(0..n_keys).contains(&k)) {
            return bad("a key code has no key string");
        }
        let ts_ok = |t: &i64| (-stamp::TS_LIMIT..stamp::TS_LIMIT).contains(t);
        if !start.iter().chain(&end).chain(&stamp_ts).chain(&path_ts).chain(&ids_ts).all(ts_ok)
            || seq >= stamp::SEQ_LIMIT
            || created.iter().chain(&stamp_seq).chain(&path_seq).chain(&ids_seq).any(|&q| q >= seq) {
            return bad("a ts or an arrival number out of range");
        }
        let stamp = |i: usize| Stamp::new(stamp_ts[i], stamp_seq[i], stamp_code[i]);
        let mut steps: Vec<Stamp> = Vec::with_capacity(path_code.len());
        steps.extend((0..path_code.len()).map(|i| Stamp::new(path_ts[i], path_seq[i], path_code[i])));
        let mut ids: Vec<Stamp> = Vec::with_capacity(ids_code.len());
        ids.extend((0..ids_code.len()).map(|i| Stamp::new(ids_ts[i], ids_seq[i], ids_code[i])));
        let sessions: Vec<RestoredSession> = (0..n).map(|i| RestoredSession {
            key: key[i] as u32,
            created: created[i],
            start: start[i],
            end: end[i],
            count: count[i],
            page_views: page_views[i],
            conversions: conversions[i],
            revenue: revenue[i],
            stamps: [stamp(5 * i), stamp(5 * i + 1), stamp(5 * i + 2), stamp(5 * i + 3), stamp(5 * i + 4)],
            is_bot: is_bot[i],
            path: &steps[path_offsets[i]..path_offsets[i + 1]],
            ids: if with_ids { &ids[ids_offsets[i]..ids_offsets[i + 1]] } else { &[] },
        }).collect();
        let seals: Vec<(u32, i64, i64, u64)> = (0..m)
            .map(|i| (seal_key[i] as u32, seal_start[i], seal_expires[i], seal_created[i]))
            .collect();
        self.eng.restore(&sessions, &seals, stream_time, seq, counters);
        Ok(())
    }

    /// End of input: close every open session.
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let eng = &mut self.eng;
        let out = py.detach(move || {
            eng.flush();
            eng.drain()
        });
        output_dict(py, out)
    }

    /// Records of every open session (sorted by start, created), as columns.
    fn open_records<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cols = self.eng.open_records();
        cols_dict(py, cols)
    }

    /// Session ids (32 hex digits each) of sessions given as (key code, created seq).
    fn session_ids<'py>(
        &self,
        py: Python<'py>,
        key: PyReadonlyArray1<'py, i32>,
        created: PyReadonlyArray1<'py, u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hex = self.hex_ids(slice(&key, "key")?, slice(&created, "created")?)?;
        let items = hex.chunks_exact(32).map(|h| {
            // SAFETY-free: hex digits are ASCII
            PyString::new(py, std::str::from_utf8(h).expect("ascii"))
        });
        PyList::new(py, items)
    }

    /// The same ids as one bytes object of 32 ASCII bytes each (for `np.frombuffer(.., "S32")`).
    fn session_ids_bytes<'py>(
        &self,
        py: Python<'py>,
        key: PyReadonlyArray1<'py, i32>,
        created: PyReadonlyArray1<'py, u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let hex = self.hex_ids(slice(&key, "key")?, slice(&created, "created")?)?;
        Ok(PyBytes::new(py, &hex))
    }

    #[getter]
    fn stream_time(&self) -> Option<i64> {
        self.eng.stream_time
    }

    #[getter]
    fn seq(&self) -> u64 {
        self.eng.seq
    }

    #[getter]
    fn open_count(&self) -> usize {
        self.eng.open
    }

    #[getter]
    fn sealed_count(&self) -> usize {
        self.eng.sealed_count
    }

    /// received, counted, late, no_key
    fn counters(&self) -> (u64, u64, u64, u64) {
        (self.eng.received, self.eng.counted, self.eng.late, self.eng.no_key)
    }

    /// Bytes held by the main structures (their capacities), by name.
    fn memory<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, bytes) in self.eng.memory() {
            d.set_item(name, bytes)?;
        }
        d.set_item("key_vocab", self.keys.bytes())?;
        Ok(d)
    }

    /// Path arena per size class: (steps per block, blocks, free blocks, capacity in steps).
    fn path_stats(&self) -> Vec<(usize, usize, usize, usize)> {
        self.eng.path_stats()
    }

    #[getter]
    fn gap_ms(&self) -> i64 {
        self.gap
    }

    #[getter]
    fn grace_ms(&self) -> Option<i64> {
        self.grace
    }
}

impl Core {
    fn code_of(&mut self, value: &Bound<'_, PyAny>) -> PyResult<i32> {
        if let Ok(s) = value.cast::<PyString>() {
            let s = s.to_str()?;
            if s.is_empty() {
                return Ok(-1);
            }
            return Ok(self.keys.code(s.as_bytes()) as i32);
        }
        if value.is_none() || !value.is_truthy()? {
            return Ok(-1);
        }
        Err(PyTypeError::new_err(format!("a key must be a str, not {}", value.get_type().name()?)))
    }

    fn sync_keys(&mut self) {
        let n = self.keys.len();
        if n > self.eng.n_keys() {
            self.eng.add_keys(n - self.eng.n_keys());
        }
    }

    fn hex_ids(&self, key: &[i32], created: &[u64]) -> PyResult<Vec<u8>> {
        if key.len() != created.len() {
            return Err(PyValueError::new_err("key and created must have the same length"));
        }
        let n_keys = self.keys.len();
        let mut out = vec![0u8; key.len() * 32];
        let mut buf = Vec::with_capacity(64);
        for (i, (&k, &c)) in key.iter().zip(created).enumerate() {
            if k < 0 || k as usize >= n_keys {
                return Err(PyValueError::new_err(format!("unknown key code {k}")));
            }
            sid::session_id_hex(&mut buf, self.partition, self.keys.get(k as usize), c,
                                (&mut out[i * 32..(i + 1) * 32]).try_into().expect("32 bytes"));
        }
        Ok(out)
    }
}

fn cols_dict<'py>(py: Python<'py>, c: Cols) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("key", c.key.into_pyarray(py))?;
    d.set_item("created", c.created.into_pyarray(py))?;
    d.set_item("start", c.start.into_pyarray(py))?;
    d.set_item("end", c.end.into_pyarray(py))?;
    d.set_item("count", c.count.into_pyarray(py))?;
    d.set_item("page_views", c.page_views.into_pyarray(py))?;
    d.set_item("conversions", c.conversions.into_pyarray(py))?;
    d.set_item("revenue", c.revenue.into_pyarray(py))?;
    d.set_item("entry", c.entry.into_pyarray(py))?;
    d.set_item("exit", c.exit.into_pyarray(py))?;
    d.set_item("referrer", c.referrer.into_pyarray(py))?;
    d.set_item("campaign", c.campaign.into_pyarray(py))?;
    d.set_item("user_agent", c.user_agent.into_pyarray(py))?;
    d.set_item("is_bot", c.is_bot.into_pyarray(py))?;
    d.set_item("path_offsets", c.path_offsets.into_pyarray(py))?;
    d.set_item("path", c.path.into_pyarray(py))?;
    d.set_item("path_ms", c.path_ms.into_pyarray(py))?;
    let with_ids = !c.ids_offsets.is_empty();
    if with_ids {
        d.set_item("ids_offsets", c.ids_offsets.into_pyarray(py))?;
        d.set_item("ids", c.ids.into_pyarray(py))?;
    }
    if let Some(st) = c.state {
        d.set_item("stamp_ts", st.stamp_ts.into_pyarray(py))?;
        d.set_item("stamp_seq", st.stamp_seq.into_pyarray(py))?;
        d.set_item("path_seq", st.path_seq.into_pyarray(py))?;
        if with_ids {
            d.set_item("ids_ts", st.ids_ts.into_pyarray(py))?;
            d.set_item("ids_seq", st.ids_seq.into_pyarray(py))?;
        }
    }
    Ok(d)
}

fn output_dict<'py>(py: Python<'py>, o: Output) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("upserts", cols_dict(py, o.upserts)?)?;
    d.set_item("finals", cols_dict(py, o.finals)?)?;
    d.set_item("retracted_key", o.retracted_key.into_pyarray(py))?;
    d.set_item("retracted_created", o.retracted_created.into_pyarray(py))?;
    d.set_item("rej_index", o.rejections.index.into_pyarray(py))?;
    d.set_item("rej_kind", o.rejections.kind.into_pyarray(py))?;
    d.set_item("rej_a", o.rejections.a.into_pyarray(py))?;
    d.set_item("rej_b", o.rejections.b.into_pyarray(py))?;
    d.set_item("stream_time", o.stream_time)?;
    d.set_item("counted", o.counted)?;
    if let Some(st) = o.state {
        d.set_item("merged_key", st.merged_key.into_pyarray(py))?;
        d.set_item("merged_created", st.merged_created.into_pyarray(py))?;
        d.set_item("sealed_key", st.sealed_key.into_pyarray(py))?;
        d.set_item("sealed_start", st.sealed_start.into_pyarray(py))?;
        d.set_item("sealed_expires", st.sealed_expires.into_pyarray(py))?;
        d.set_item("sealed_created", st.sealed_created.into_pyarray(py))?;
        d.set_item("unsealed_key", st.unsealed_key.into_pyarray(py))?;
    }
    Ok(d)
}

/// JSON records to event columns (see `jsondecode.rs`): the common shapes decoded here, every
/// other record marked for the reference decoder.
#[pyclass(module = "sessionize_core")]
struct JsonDecoder {
    spec: jsondecode::Spec,
}

#[pymethods]
impl JsonDecoder {
    /// `ts_format`: "iso" (with `naive_utc`: a time without offset is UTC), or "epoch_s",
    /// "epoch_ms", "epoch_us".
    #[new]
    #[pyo3(signature = (key, ts, ts_format, naive_utc, typ, default_type, event_id, page, referrer,
                        user_agent, campaign, revenue, received_at))]
    #[allow(clippy::too_many_arguments)]
    fn new(key: Vec<String>, ts: String, ts_format: &str, naive_utc: bool, typ: Option<String>,
           default_type: Option<String>, event_id: Option<String>, page: Option<String>,
           referrer: Option<String>, user_agent: Option<String>, campaign: Vec<String>,
           revenue: Option<String>, received_at: Option<String>) -> PyResult<JsonDecoder> {
        let ts_format = match ts_format {
            "iso" => jsondecode::TsFormat::Iso { naive_utc },
            "epoch_s" => jsondecode::TsFormat::Epoch { scale: 1000.0 },
            "epoch_ms" => jsondecode::TsFormat::Epoch { scale: 1.0 },
            "epoch_us" => jsondecode::TsFormat::Epoch { scale: 0.001 },
            other => return Err(PyValueError::new_err(format!("unsupported ts_format {other:?}"))),
        };
        if key.is_empty() {
            return Err(PyValueError::new_err("at least one key field"));
        }
        Ok(JsonDecoder { spec: jsondecode::Spec {
            key, ts, ts_format, typ, default_type, event_id, page, referrer, user_agent, campaign,
            revenue, received_at,
        } })
    }

    /// Decode a list of records (bytes, or None for a record without a value). Returns a dict:
    /// `status` (0 decoded, 1 for the reference decoder), `ts`, `revenue` (NaN: none), and for
    /// `key`, `type`, `event_id`, `page`, `referrer`, `campaign`, `user_agent` the per-batch
    /// dictionary `<name>_codes` (-1: none) into `<name>_values`.
    fn decode<'py>(&self, py: Python<'py>, values: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyDict>> {
        let mut owned: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(values.len());
        for v in values.iter() {
            if v.is_none() {
                owned.push(None);
            } else {
                owned.push(Some(v.cast_into::<PyBytes>().map_err(|_| {
                    PyTypeError::new_err("records must be bytes or None")
                })?));
            }
        }
        let slices: Vec<Option<&[u8]>> = owned.iter().map(|b| b.as_ref().map(|b| b.as_bytes())).collect();
        let spec = &self.spec;
        let out = py.detach(|| jsondecode::decode(spec, &slices));
        let d = PyDict::new(py);
        d.set_item("status", out.status.into_pyarray(py))?;
        d.set_item("ts", out.ts.into_pyarray(py))?;
        d.set_item("revenue", out.revenue.into_pyarray(py))?;
        for (name, col) in [("key", out.key), ("type", out.typ), ("event_id", out.event_id),
                            ("page", out.page), ("referrer", out.referrer), ("campaign", out.campaign),
                            ("user_agent", out.user_agent)] {
            d.set_item(format!("{name}_codes"), col.codes.into_pyarray(py))?;
            d.set_item(format!("{name}_values"), PyList::new(py, col.values)?)?;
        }
        Ok(d)
    }
}

#[pymodule]
fn sessionize_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<JsonDecoder>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SESSION_BYTES", std::mem::size_of::<engine::Session>())?;
    Ok(())
}
