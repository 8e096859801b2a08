//! JSON records (Kafka values, JSON Lines) to event columns, for the common shapes only.
//!
//! The reference is Python's `RecordDecoder` (`sessionize.decode.fields`) with its timestamp
//! parsers. This decodes a record here only when every field it reads has a shape whose result
//! is certain to be the reference's: text fields that are JSON strings (or null, or absent), a
//! timestamp that is a JSON number or a strict ISO-8601 string, a revenue that is a JSON number.
//! Anything else (a number where text is expected, a timestamp spelling Python also reads, a key
//! with a NUL, invalid JSON) marks the record `FALLBACK`, and the caller decodes that record
//! with the reference, which also words the rejection of a record that is malformed. So the
//! result is the reference's for every record, and the fast path covers what real feeds send.
//!
//! Text comes back dictionary-encoded per batch (`codes` into `values`, -1 = none): keys, types
//! and pages repeat within a batch, and the caller maps each distinct value once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub const DECODED: u8 = 0;
pub const FALLBACK: u8 = 1;

/// Event time must lie in [-2^47, 2^47) ms (the engine's range); beyond it the reference rejects.
const TS_LIMIT: i64 = 1 << 47;

#[derive(Clone, Copy)]
pub enum TsFormat {
    /// ISO-8601, or a JSON number of epoch milliseconds; `naive_utc`: a time without an offset is
    /// UTC (the input zone), else such a time needs the zone database: fallback
    Iso { naive_utc: bool },
    /// a JSON number times `scale`, rounded half to even (Python's `round(float(v) * scale)`)
    Epoch { scale: f64 },
}

pub struct Spec {
    pub key: Vec<String>,
    pub ts: String,
    pub ts_format: TsFormat,
    pub typ: Option<String>,
    pub default_type: Option<String>,
    pub event_id: Option<String>,
    pub page: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub campaign: Vec<String>,
    pub revenue: Option<String>,
    pub received_at: Option<String>,
}

/// The field names a record is read for, and where each of the spec's fields is among them.
struct Layout {
    names: Vec<String>,
    key: Vec<usize>,
    ts: usize,
    typ: Option<usize>,
    event_id: Option<usize>,
    page: Option<usize>,
    referrer: Option<usize>,
    user_agent: Option<usize>,
    campaign: Vec<usize>,
    revenue: Option<usize>,
    received_at: Option<usize>,
}

impl Layout {
    fn new(spec: &Spec) -> Layout {
        let mut names: Vec<String> = Vec::new();
        let mut at = |name: &str| -> usize {
            match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    names.push(name.to_owned());
                    names.len() - 1
                }
            }
        };
        let key = spec.key.iter().map(|n| at(n)).collect();
        let ts = at(&spec.ts);
        let mut opt = |n: &Option<String>| n.as_deref().map(&mut at);
        let (typ, event_id, page) = (opt(&spec.typ), opt(&spec.event_id), opt(&spec.page));
        let (referrer, user_agent) = (opt(&spec.referrer), opt(&spec.user_agent));
        let (revenue, received_at) = (opt(&spec.revenue), opt(&spec.received_at));
        let campaign = spec.campaign.iter().map(|n| at(n)).collect();
        Layout { names, key, ts, typ, event_id, page, referrer, user_agent, campaign, revenue,
                 received_at }
    }
}

/// A field's value, as far as decoding needs to tell shapes apart.
#[derive(Clone)]
enum Val<'a> {
    Absent,
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// a boolean, an array or an object: never a certain shape here
    Other,
}

/// FxHash: the per-batch dictionaries are small and rebuilt every batch.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

/// One text column of a batch: each row's code into `values` (-1: no value).
#[derive(Default)]
pub struct TextColumn {
    pub codes: Vec<i32>,
    pub values: Vec<String>,
    index: HashMap<String, i32, BuildHasherDefault<Fx>>,
}

impl TextColumn {
    fn push(&mut self, value: Option<&str>) {
        let code = match value {
            None => -1,
            Some(v) => match self.index.get(v) {
                Some(&c) => c,
                None => {
                    let c = self.values.len() as i32;
                    self.values.push(v.to_owned());
                    self.index.insert(v.to_owned(), c);
                    c
                }
            },
        };
        self.codes.push(code);
    }
}

/// The columns of a batch; a row whose status is FALLBACK holds placeholders.
#[derive(Default)]
pub struct Decoded {
    pub status: Vec<u8>,
    pub ts: Vec<i64>,
    pub revenue: Vec<f64>,
    pub key: TextColumn,
    pub typ: TextColumn,
    pub event_id: TextColumn,
    pub page: TextColumn,
    pub referrer: TextColumn,
    pub campaign: TextColumn,
    pub user_agent: TextColumn,
}

pub fn decode(spec: &Spec, values: &[Option<&[u8]>]) -> Decoded {
    let layout = Layout::new(spec);
    let mut out = Decoded::default();
    let n = values.len();
    out.status.reserve(n);
    out.ts.reserve(n);
    out.revenue.reserve(n);
    let mut vals: Vec<Val> = Vec::with_capacity(layout.names.len());
    for value in values {
        let ok = match value {
            Some(bytes) if orjson_reads(bytes) => read(&layout, bytes, &mut vals)
                .and_then(|()| row(spec, &layout, &vals, &mut out)),
            _ => None,
        };
        if ok.is_none() {
            out.status.push(FALLBACK);
            out.ts.push(0);
            out.revenue.push(f64::NAN);
            for col in [&mut out.key, &mut out.typ, &mut out.event_id, &mut out.page,
                        &mut out.referrer, &mut out.campaign, &mut out.user_agent] {
                col.push(None);
            }
        }
    }
    out
}

/// Could orjson (the reference's parser) read this record, as far as serde_json may not
/// check it? serde_json reads integers beyond 64 bits as doubles, where orjson refuses them,
/// and skips over the text of fields it ignores. So: valid UTF-8, no control character in a
/// string, only valid escapes (surrogates left to the reference), and no run of 20 or more
/// digits outside a string (a few valid records go to the reference too; rare, and exact).
fn orjson_reads(bytes: &[u8]) -> bool {
    if std::str::from_utf8(bytes).is_err() {
        return false;
    }
    let (mut in_str, mut i) = (false, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            i += 1;
            if c < 0x20 {
                return false;
            }
            if c == b'\\' {
                match bytes.get(i) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                    // \uXXXX: a surrogate (paired or not) goes to the reference, as does bad hex
                    Some(b'u') => {
                        let hex = bytes.get(i + 1..i + 5).and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u16::from_str_radix(h, 16).ok());
                        match hex {
                            Some(u) if !(0xD800..=0xDFFF).contains(&u) => i += 5,
                            _ => return false,
                        }
                    }
                    _ => return false,
                }
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'-' || c.is_ascii_digit() {
            match number_len(&bytes[i..]) {
                Some(n) => i += n,
                None => return false,
            }
        } else {
            in_str = c == b'"';
            i += 1;
        }
    }
    true
}

/// The length of the number token at the start of `b`, if both parsers surely read it alike:
/// fewer than 20 integer digits (no integer beyond 64 bits) and, with an exponent, a magnitude
/// well inside a double's range (serde_json skips the numbers of ignored fields unchecked,
/// orjson refuses one that overflows). None: leave the record to the reference.
fn number_len(b: &[u8]) -> Option<usize> {
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = (i - int_start) as i64;
    if int_digits >= 20 {
        return None;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let negative = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (mut exp, exp_start) = (0i64, i);
        while i < b.len() && b[i].is_ascii_digit() {
            exp = (exp * 10 + (b[i] - b'0') as i64).min(100_000);
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        let magnitude = int_digits + if negative { -exp } else { exp };
        if !(-290..=290).contains(&magnitude) {
            return None;
        }
    }
    Some(i.max(1))
}

/// Parse a record into `vals` (one per layout name, Absent when missing); None: not a JSON
/// object serde_json reads.
fn read<'a>(layout: &Layout, bytes: &'a [u8], vals: &mut Vec<Val<'a>>) -> Option<()> {
    vals.clear();
    vals.resize(layout.names.len(), Val::Absent);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let filled = RecordSeed { names: &layout.names, vals }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(filled)
}

struct RecordSeed<'s, 'a> {
    names: &'s [String],
    vals: &'s mut Vec<Val<'a>>,
}

impl<'de, 's> DeserializeSeed<'de> for RecordSeed<'s, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 's> Visitor<'de> for RecordSeed<'s, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.names.iter().position(|n| n.as_str() == key) {
                // a repeated key: the last one counts, as in orjson
                Some(i) => self.vals[i] = map.next_value_seed(ValSeed)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ValSeed;

impl<'de> DeserializeSeed<'de> for ValSeed {
    type Value = Val<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValSeed {
    type Value = Val<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(i64::try_from(v).map_or(Val::UInt(v), Val::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
}

/// A text field: absent, null or "" is no value; a string is itself; anything else: fallback.
fn text<'v>(vals: &'v [Val], at: Option<usize>) -> Option<Option<&'v str>> {
    let Some(i) = at else { return Some(None) };
    match &vals[i] {
        Val::Absent | Val::Null => Some(None),
        Val::Str(s) => Some(if s.is_empty() { None } else { Some(s.as_ref()) }),
        _ => None,
    }
}

/// Append the record's row when every field it reads has a certain shape; None (and nothing
/// appended) otherwise.
fn row(spec: &Spec, layout: &Layout, vals: &[Val], out: &mut Decoded) -> Option<()> {
    // the key: one field, or several joined with "|" (no value if any part has none)
    let mut parts: [Option<&str>; 4] = [None; 4];
    if layout.key.len() > parts.len() {
        return None;
    }
    for (slot, &i) in parts.iter_mut().zip(&layout.key) {
        *slot = text(vals, Some(i))?;
    }
    let parts = &parts[..layout.key.len()];
    let joined: Option<Cow<str>> = if parts.iter().any(|p| p.is_none()) {
        None
    } else if parts.len() == 1 {
        parts[0].map(Cow::Borrowed)
    } else {
        Some(Cow::Owned(parts.iter().map(|p| p.unwrap_or("")).collect::<Vec<_>>().join("|")))
    };
    if joined.as_deref().is_some_and(|k| k.contains('\0')) {
        return None; // the reference rejects it, in its own words
    }
    let ts = timestamp(&vals[layout.ts], spec.ts_format)?;
    let typ = text(vals, layout.typ)?.or(spec.default_type.as_deref());
    let event_id = text(vals, layout.event_id)?;
    let page = text(vals, layout.page)?;
    let referrer = text(vals, layout.referrer)?;
    let user_agent = text(vals, layout.user_agent)?;
    // the campaign: the fields joined with "/" (a missing part empty), none if all are missing
    let mut camp: Vec<Option<&str>> = Vec::with_capacity(layout.campaign.len());
    for &i in &layout.campaign {
        camp.push(text(vals, Some(i))?);
    }
    let campaign = if camp.iter().all(|p| p.is_none()) {
        None
    } else {
        Some(camp.iter().map(|p| p.unwrap_or("")).collect::<Vec<_>>().join("/"))
    };
    let revenue = match layout.revenue.map(|i| &vals[i]) {
        None | Some(Val::Absent) | Some(Val::Null) => f64::NAN,
        Some(Val::Str(s)) if s.is_empty() => f64::NAN,
        Some(Val::Int(v)) => *v as f64,
        Some(Val::UInt(v)) => *v as f64,
        Some(Val::Float(v)) => *v,
        Some(_) => return None,
    };
    if let Some(i) = layout.received_at {
        match &vals[i] {
            Val::Absent | Val::Null => {}
            Val::Str(s) if s.is_empty() => {}
            v => {
                timestamp(v, TsFormat::Iso { naive_utc: true })?;
            }
        }
    }
    out.status.push(DECODED);
    out.ts.push(ts);
    out.revenue.push(revenue);
    out.key.push(joined.as_deref());
    out.typ.push(typ);
    out.event_id.push(event_id);
    out.page.push(page);
    out.referrer.push(referrer);
    out.campaign.push(campaign.as_deref());
    out.user_agent.push(user_agent);
    Some(())
}

fn timestamp(value: &Val, fmt: TsFormat) -> Option<i64> {
    let ms = match (fmt, value) {
        (TsFormat::Iso { .. }, Val::Int(i)) => *i,
        (TsFormat::Iso { .. }, Val::UInt(_)) => return None,
        (TsFormat::Iso { .. }, Val::Float(f)) => {
            let f = f.trunc(); // Python's int(float)
            if !(-(TS_LIMIT as f64)..TS_LIMIT as f64).contains(&f) {
                return None;
            }
            f as i64
        }
        (TsFormat::Iso { naive_utc }, Val::Str(s)) => iso_ms(s.as_bytes(), naive_utc)?,
        (TsFormat::Epoch { scale }, v @ (Val::Int(_) | Val::Float(_))) => {
            let f = match v {
                Val::Int(i) if i.unsigned_abs() <= 1 << 53 => *i as f64,
                Val::Float(f) => *f,
                _ => return None,
            };
            let r = (f * scale).round_ties_even();
            if !(-(TS_LIMIT as f64)..TS_LIMIT as f64).contains(&r) {
                return None;
            }
            r as i64
        }
        _ => return None,
    };
    if (-TS_LIMIT..TS_LIMIT).contains(&ms) {
        Some(ms)
    } else {
        None
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}][Z|+HH:MM|-HH:MM]` to epoch ms (floor), as Python's
/// `datetime.fromisoformat` reads it; any other spelling: None (Python reads more of them).
pub fn iso_ms(s: &[u8], naive_utc: bool) -> Option<i64> {
    if s.len() < 19 {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        let mut v = 0i64;
        for &c in &s[a..b] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    };
    if s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b' ') || s[13] != b':'
        || s[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if y < 1 || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59
        || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if i < s.len() && s[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < s.len() && s[end].is_ascii_digit() {
            end += 1;
        }
        let digits = end - start;
        if !(1..=6).contains(&digits) {
            return None;
        }
        micros = num(start, end)? * 10i64.pow((6 - digits) as u32);
        i = end;
    }
    let offset_min = if i == s.len() {
        if !naive_utc {
            return None;
        }
        0
    } else if s[i] == b'Z' && i + 1 == s.len() {
        0
    } else if (s[i] == b'+' || s[i] == b'-') && s.len() == i + 6 && s[i + 3] == b':' {
        let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
        if oh > 23 || om > 59 {
            return None;
        }
        let m = oh * 60 + om;
        if s[i] == b'-' {
            -m
        } else {
            m
        }
    } else {
        return None;
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + micros.div_euclid(1000)
        - offset_min * 60_000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso() {
        assert_eq!(iso_ms(b"1970-01-01T00:00:00Z", false), Some(0));
        assert_eq!(iso_ms(b"2019-10-01T00:00:00.5+02:00", false), Some(1_569_880_800_500));
        assert_eq!(iso_ms(b"1969-12-31T23:59:59.9999Z", false), Some(-1));
        assert_eq!(iso_ms(b"2019-10-01 00:00:00", false), None);
        assert_eq!(iso_ms(b"2019-10-01 00:00:00", true), Some(1_569_888_000_000));
        assert_eq!(iso_ms(b"2019-02-29T00:00:00Z", false), None);
        assert_eq!(iso_ms(b"2020-02-29T00:00:00Z", false), Some(1_582_934_400_000));
    }
}
