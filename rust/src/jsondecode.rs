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

use std::collections::HashMap;

use serde_json::{Map, Value};

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

/// One text column of a batch: each row's code into `values` (-1: no value).
#[derive(Default)]
pub struct TextColumn {
    pub codes: Vec<i32>,
    pub values: Vec<String>,
    index: HashMap<String, i32>,
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

struct Row {
    key: Option<String>,
    ts: i64,
    revenue: f64,
}

pub fn decode(spec: &Spec, values: &[Option<&[u8]>]) -> Decoded {
    let mut out = Decoded::default();
    let n = values.len();
    out.status.reserve(n);
    out.ts.reserve(n);
    out.revenue.reserve(n);
    for value in values {
        let parsed = value.and_then(|v| match serde_json::from_slice::<Value>(v) {
            Ok(Value::Object(obj)) if obj.values().all(orjson_reads) => Some(obj),
            _ => None,
        });
        let row = parsed.as_ref().and_then(|obj| read_row(spec, obj));
        match (parsed.as_ref(), row) {
            (Some(obj), Some(row)) => {
                out.status.push(DECODED);
                out.ts.push(row.ts);
                out.revenue.push(row.revenue);
                out.key.push(row.key.as_deref());
                let typ = text(obj, &spec.typ).expect("checked").or(spec.default_type.as_deref());
                out.typ.push(typ);
                out.event_id.push(text(obj, &spec.event_id).expect("checked"));
                out.page.push(text(obj, &spec.page).expect("checked"));
                out.referrer.push(text(obj, &spec.referrer).expect("checked"));
                out.campaign.push(campaign(obj, &spec.campaign).expect("checked").as_deref());
                out.user_agent.push(text(obj, &spec.user_agent).expect("checked"));
            }
            _ => {
                out.status.push(FALLBACK);
                out.ts.push(0);
                out.revenue.push(f64::NAN);
                for col in [&mut out.key, &mut out.typ, &mut out.event_id, &mut out.page,
                            &mut out.referrer, &mut out.campaign, &mut out.user_agent] {
                    col.push(None);
                }
            }
        }
    }
    out
}

/// Would orjson (the reference's parser) read this value? serde_json reads a little more:
/// integers beyond 64 bits and numbers beyond the range of a double.
fn orjson_reads(v: &Value) -> bool {
    match v {
        Value::Number(x) => {
            if x.is_i64() || x.is_u64() {
                return true;
            }
            let lit = x.as_str();
            lit.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'))
                && x.as_f64().is_some_and(f64::is_finite)
        }
        Value::Array(a) => a.iter().all(orjson_reads),
        Value::Object(o) => o.values().all(orjson_reads),
        _ => true,
    }
}

/// The fields of a record whose shapes are certain; None: let the reference decode it.
fn read_row(spec: &Spec, obj: &Map<String, Value>) -> Option<Row> {
    let key = key(obj, &spec.key)?;
    let ts = timestamp(obj.get(&spec.ts)?, spec.ts_format)?;
    for field in [&spec.typ, &spec.event_id, &spec.page, &spec.referrer, &spec.user_agent] {
        text(obj, field)?;
    }
    campaign(obj, &spec.campaign)?;
    let revenue = match &spec.revenue {
        None => f64::NAN,
        Some(name) => match obj.get(name) {
            None | Some(Value::Null) => f64::NAN,
            Some(Value::String(s)) if s.is_empty() => f64::NAN,
            Some(Value::Number(x)) => x.as_f64()?,
            Some(_) => return None,
        },
    };
    if let Some(name) = &spec.received_at {
        match obj.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) => {
                timestamp(v, TsFormat::Iso { naive_utc: true })?;
            }
        }
    }
    Some(Row { key, ts, revenue })
}

/// A text field: absent, null or "" is no value; a string is itself; anything else: fallback.
fn text<'a>(obj: &'a Map<String, Value>, name: &Option<String>) -> Option<Option<&'a str>> {
    let Some(name) = name else { return Some(None) };
    match obj.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(if s.is_empty() { None } else { Some(s.as_str()) }),
        Some(_) => None,
    }
}

/// The key: one field, or several joined with "|" (no value if any part has none).
fn key(obj: &Map<String, Value>, names: &[String]) -> Option<Option<String>> {
    let mut joined: Option<String> = None;
    for (i, name) in names.iter().enumerate() {
        match text(obj, &Some(name.clone()))? {
            None => {
                // the other parts must still be of a certain shape
                for rest in &names[i + 1..] {
                    text(obj, &Some(rest.clone()))?;
                }
                return Some(None);
            }
            Some(part) => match joined.as_mut() {
                None => joined = Some(part.to_owned()),
                Some(j) => {
                    j.push('|');
                    j.push_str(part);
                }
            },
        }
    }
    match joined {
        Some(k) if k.contains('\0') => None, // the reference rejects it, in its own words
        k => Some(k),
    }
}

/// The campaign: the fields joined with "/" (a missing part empty), no value if all are missing.
fn campaign(obj: &Map<String, Value>, names: &[String]) -> Option<Option<String>> {
    let mut parts: Vec<Option<&str>> = Vec::with_capacity(names.len());
    for name in names {
        parts.push(text(obj, &Some(name.clone()))?);
    }
    if parts.iter().all(|p| p.is_none()) {
        return Some(None);
    }
    Some(Some(parts.iter().map(|p| p.unwrap_or("")).collect::<Vec<_>>().join("/")))
}

fn timestamp(value: &Value, fmt: TsFormat) -> Option<i64> {
    let ms = match (fmt, value) {
        (TsFormat::Iso { .. }, Value::Number(x)) => {
            if let Some(i) = x.as_i64() {
                i
            } else if x.is_f64() {
                let f = x.as_f64()?.trunc(); // Python's int(float)
                if !(-(TS_LIMIT as f64)..TS_LIMIT as f64).contains(&f) {
                    return None;
                }
                f as i64
            } else {
                return None;
            }
        }
        (TsFormat::Iso { naive_utc }, Value::String(s)) => iso_ms(s.as_bytes(), naive_utc)?,
        (TsFormat::Epoch { scale }, Value::Number(x)) => {
            let f = if let Some(i) = x.as_i64() {
                if i.unsigned_abs() > 1 << 53 {
                    return None;
                }
                i as f64
            } else if x.is_f64() {
                x.as_f64()?
            } else {
                return None;
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
