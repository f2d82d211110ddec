//! PostgreSQL values in their text form, as both `COPY … TO STDOUT` and pgoutput (text mode)
//! deliver them, turned into SQLite values by the column's [`Kind`] — the one type mapping of
//! the PostgreSQL source, documented in README "ETL/CDC pipelines":
//!
//! | PostgreSQL | trexdb (SQLite) |
//! |---|---|
//! | `int2`, `int4`, `int8`, `oid` | INTEGER |
//! | `float4`, `float8` | REAL (`NaN` as the TEXT `NaN`, ±Infinity as REAL ±inf) |
//! | `numeric` | TEXT, the exact decimal (no float rounding) |
//! | `bool` | INTEGER 1 / 0 |
//! | `bytea` | BLOB |
//! | `json`, `jsonb` | TEXT (jsonb in PostgreSQL's normalised form) |
//! | `timestamptz` | TEXT `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, fixed width, so it sorts) |
//! | `timestamp` | TEXT `YYYY-MM-DDTHH:MM:SS.ffffff` |
//! | arrays | TEXT, a JSON array (nested for more dimensions; elements by their own kind) |
//! | everything else (`text`, `varchar`, `uuid`, `date`, `time`, `interval`, enums, …) | TEXT as PostgreSQL prints it |
//! | NULL | NULL |
//!
//! The sessions that read values set `TimeZone=UTC`, `DateStyle=ISO`, `extra_float_digits=3`,
//! `bytea_output=hex` and `IntervalStyle=postgres` (see [`SESSION_OPTIONS`]), so the text
//! form does not depend on the server's settings.

use rusqlite::types::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The session settings every source connection uses (`options` of the startup packet).
pub const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 \
                                   -c bytea_output=hex -c IntervalStyle=postgres";

/// How a column's text becomes a SQLite value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Int,
    Float,
    Numeric,
    Bool,
    Bytea,
    Json,
    Timestamptz,
    Timestamp,
    Text,
    Array,
}

impl Kind {
    /// The kind of a built-in type by its OID (anything unknown is text).
    pub fn of_oid(oid: u32) -> Kind {
        match oid {
            20 | 21 | 23 | 26 => Kind::Int,
            700 | 701 => Kind::Float,
            1700 => Kind::Numeric,
            16 => Kind::Bool,
            17 => Kind::Bytea,
            114 | 3802 => Kind::Json,
            1184 => Kind::Timestamptz,
            1114 => Kind::Timestamp,
            _ => Kind::Text,
        }
    }

    /// The declared SQLite type of a replica column of this kind (its affinity matches the
    /// values stored).
    pub fn sqlite_type(self) -> &'static str {
        match self {
            Kind::Int | Kind::Bool => "INTEGER",
            Kind::Float => "REAL",
            Kind::Bytea => "BLOB",
            _ => "TEXT",
        }
    }
}

/// A column's text as the SQLite value it is stored as (`elem`: an array's element kind).
pub fn convert(kind: Kind, elem: Kind, text: &str) -> Value {
    match kind {
        Kind::Int => text
            .parse::<i64>()
            .map(Value::Integer)
            .unwrap_or_else(|_| Value::Text(text.into())),
        Kind::Float => match text {
            "NaN" => Value::Text("NaN".into()),
            "Infinity" => Value::Real(f64::INFINITY),
            "-Infinity" => Value::Real(f64::NEG_INFINITY),
            _ => text
                .parse::<f64>()
                .map(Value::Real)
                .unwrap_or_else(|_| Value::Text(text.into())),
        },
        Kind::Bool => match text {
            "t" | "true" => Value::Integer(1),
            "f" | "false" => Value::Integer(0),
            _ => Value::Text(text.into()),
        },
        Kind::Bytea => match text.strip_prefix("\\x").and_then(|h| hex::decode(h).ok()) {
            Some(b) => Value::Blob(b),
            None => Value::Text(text.into()),
        },
        Kind::Timestamptz => Value::Text(timestamp(text, true)),
        Kind::Timestamp => Value::Text(timestamp(text, false)),
        Kind::Array => match parse_array(text, elem) {
            Some(j) => Value::Text(j.to_string()),
            None => Value::Text(text.into()),
        },
        Kind::Numeric | Kind::Json | Kind::Text => Value::Text(text.into()),
    }
}

/// [`convert`] of a value already owned (text kinds keep its allocation).
pub fn convert_owned(kind: Kind, elem: Kind, text: String) -> Value {
    match kind {
        Kind::Numeric | Kind::Json | Kind::Text => Value::Text(text),
        _ => convert(kind, elem, &text),
    }
}

/// `2026-12-02 10:00:00.12+00` → `2026-12-02T10:00:00.120000Z` (with `zoned`), and
/// `2026-12-02 10:00:00` → `2026-12-02T10:00:00.000000`; anything else (infinity, BC dates,
/// years past 9999) is kept as PostgreSQL prints it.
pub fn timestamp(text: &str, zoned: bool) -> String {
    let keep = || text.to_string();
    let Some((date, rest)) = text.split_once(' ') else {
        return keep();
    };
    let time = if zoned {
        match rest.strip_suffix("+00") {
            Some(t) => t,
            None => return keep(),
        }
    } else {
        rest
    };
    let d = date.as_bytes();
    if d.len() != 10 || d[4] != b'-' || d[7] != b'-' {
        return keep();
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    if hms.len() != 8 || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return keep();
    }
    format!("{date}T{hms}.{frac:0<6}{}", if zoned { "Z" } else { "" })
}

/// A PostgreSQL array literal (`{1,2,NULL}`, `{{"a b",c}}`, `[0:1]={x,y}`) as a JSON array,
/// elements converted by `elem`; `None` if it is not one.
pub fn parse_array(text: &str, elem: Kind) -> Option<Json> {
    let s = match text.find("={") {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let mut p = ArrayParser {
        b: s.as_bytes(),
        i: 0,
        elem,
    };
    let v = p.array()?;
    (p.i == p.b.len()).then_some(v)
}

struct ArrayParser<'a> {
    b: &'a [u8],
    i: usize,
    elem: Kind,
}

impl ArrayParser<'_> {
    fn array(&mut self) -> Option<Json> {
        if self.b.get(self.i) != Some(&b'{') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(Json::Array(out));
        }
        loop {
            match self.b.get(self.i)? {
                b'{' => out.push(self.array()?),
                b'"' => {
                    self.i += 1;
                    let mut s = Vec::new();
                    loop {
                        match *self.b.get(self.i)? {
                            b'\\' => {
                                s.push(*self.b.get(self.i + 1)?);
                                self.i += 2;
                            }
                            b'"' => {
                                self.i += 1;
                                break;
                            }
                            c => {
                                s.push(c);
                                self.i += 1;
                            }
                        }
                    }
                    out.push(element(self.elem, &String::from_utf8(s).ok()?));
                }
                _ => {
                    let start = self.i;
                    while !matches!(self.b.get(self.i)?, b',' | b'}') {
                        self.i += 1;
                    }
                    let raw = std::str::from_utf8(&self.b[start..self.i]).ok()?.trim();
                    out.push(if raw.eq_ignore_ascii_case("NULL") {
                        Json::Null
                    } else {
                        element(self.elem, raw)
                    });
                }
            }
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Json::Array(out));
                }
                _ => return None,
            }
        }
    }
}

/// One array element as JSON by its kind.
fn element(kind: Kind, text: &str) -> Json {
    match convert(kind, Kind::Text, text) {
        Value::Integer(i) if kind == Kind::Bool => Json::Bool(i == 1),
        Value::Integer(i) => Json::from(i),
        Value::Real(f) if f.is_finite() => Json::from(f),
        _ if kind == Kind::Json => serde_json::from_str(text).unwrap_or(Json::from(text)),
        Value::Text(t) => Json::String(t),
        Value::Real(f) => Json::String(f.to_string()),
        Value::Blob(_) | Value::Null => Json::String(text.into()),
    }
}

/// Splits one line of `COPY … TO STDOUT` text format (no trailing newline) into its fields,
/// unescaped; `\N` is NULL.
pub fn copy_fields(line: &[u8]) -> Vec<Option<String>> {
    line.split(|&b| b == b'\t')
        .map(|f| {
            if f == b"\\N" {
                return None;
            }
            if !f.contains(&b'\\') {
                return Some(String::from_utf8_lossy(f).into_owned());
            }
            let mut out = Vec::with_capacity(f.len());
            let mut i = 0;
            while i < f.len() {
                if f[i] != b'\\' || i + 1 == f.len() {
                    out.push(f[i]);
                    i += 1;
                    continue;
                }
                let c = f[i + 1];
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'v' => out.push(11),
                    b'0'..=b'7' => {
                        let mut v = (c - b'0') as u32;
                        let mut n = 1;
                        while n < 3 && i < f.len() && (b'0'..=b'7').contains(&f[i]) {
                            v = v * 8 + (f[i] - b'0') as u32;
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                    }
                    b'x' => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 && i < f.len() && f[i].is_ascii_hexdigit() {
                            v = v * 16 + (f[i] as char).to_digit(16).unwrap_or(0);
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            Some(String::from_utf8_lossy(&out).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_kind() {
        assert_eq!(convert(Kind::Int, Kind::Text, "-42"), Value::Integer(-42));
        assert_eq!(convert(Kind::Float, Kind::Text, "1.5"), Value::Real(1.5));
        assert_eq!(
            convert(Kind::Float, Kind::Text, "NaN"),
            Value::Text("NaN".into())
        );
        assert_eq!(
            convert(Kind::Numeric, Kind::Text, "12345678901234567890.12345"),
            Value::Text("12345678901234567890.12345".into())
        );
        assert_eq!(convert(Kind::Bool, Kind::Text, "t"), Value::Integer(1));
        assert_eq!(
            convert(Kind::Bytea, Kind::Text, "\\x00ff41"),
            Value::Blob(vec![0, 255, 65])
        );
        assert_eq!(
            convert(Kind::Timestamptz, Kind::Text, "2026-12-02 10:00:00.12+00"),
            Value::Text("2026-12-02T10:00:00.120000Z".into())
        );
        assert_eq!(
            convert(Kind::Timestamp, Kind::Text, "2026-12-02 10:00:00"),
            Value::Text("2026-12-02T10:00:00.000000".into())
        );
        assert_eq!(
            convert(Kind::Timestamptz, Kind::Text, "infinity"),
            Value::Text("infinity".into())
        );
    }

    #[test]
    fn arrays_become_json() {
        let j = |t: &str, k: Kind| parse_array(t, k).map(|v| v.to_string());
        assert_eq!(j("{1,2,NULL}", Kind::Int).unwrap(), "[1,2,null]");
        assert_eq!(
            j(r#"{"a b","c\"d",NULL,"NULL"}"#, Kind::Text).unwrap(),
            r#"["a b","c\"d",null,"NULL"]"#
        );
        assert_eq!(j("{{1,2},{3,4}}", Kind::Int).unwrap(), "[[1,2],[3,4]]");
        assert_eq!(j("[0:1]={t,f}", Kind::Bool).unwrap(), "[true,false]");
        assert_eq!(j("{}", Kind::Int).unwrap(), "[]");
        assert!(j("{1,2", Kind::Int).is_none());
    }

    #[test]
    fn copy_text_format() {
        let f = copy_fields(b"1\t\\N\ta\\tb\\nc\\\\\t\\\\x0a\t\\101");
        assert_eq!(
            f,
            vec![
                Some("1".into()),
                None,
                Some("a\tb\nc\\".into()),
                Some("\\x0a".into()),
                Some("A".into())
            ]
        );
    }
}
