//! The units of the contract (§2): durations (`250ms`, `2s`, `5m`), sizes (`512KiB`,
//! `10MiB`), rates (`100/s`, `6000/min`) and percentages (`20%` or a bare 0–100).
//!
//! Each unit deserializes from its text form (and, where it makes sense, from a bare
//! number) and describes itself to the JSON Schema as a pattern-checked string.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written with a unit: `250ms`, `2s`, `5m`, `1h`, `1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(StdDuration::from_millis(ms))
    }
}

/// Parses `250ms`, `2s`, `1m30s`. A bare number is rejected: the unit is always explicit.
pub fn parse_duration(text: &str) -> Result<StdDuration, String> {
    let text = text.trim();
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration `{text}`: write a number with a unit, like 250ms, 2s or 5m"
        ));
    }
    humantime::parse_duration(text)
        .map_err(|_| format!("invalid duration `{text}`: expected a value like 250ms, 2s or 5m"))
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Duration)
            .map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*([0-9]+\s*(ns|us|ms|s|m|h|d)\s*)+$",
            "description": "A duration with a unit: 250ms, 2s, 5m, 1h",
        })
    }
}

/// A size in bytes, written `512KiB`, `10MiB`, `1GiB`, `100KB` or a bare byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// Parses a size: binary (`KiB`, `MiB`, `GiB`) and decimal (`KB`, `MB`, `GB`) units, or `B`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size `{text}`: expected a value like 512KiB, 10MiB or 1GiB");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 512KiB or 10MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        let text = if n != 0 && n.is_multiple_of(1 << 30) {
            format!("{}GiB", n >> 30)
        } else if n != 0 && n.is_multiple_of(1 << 20) {
            format!("{}MiB", n >> 20)
        } else if n != 0 && n.is_multiple_of(1 << 10) {
            format!("{}KiB", n >> 10)
        } else {
            format!("{n}B")
        };
        s.serialize_str(&text)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string", "pattern": r"^\s*[0-9]+\s*(B|KiB|MiB|GiB|KB|kB|MB|GB)?\s*$" },
                { "type": "integer", "minimum": 0 }
            ],
            "description": "A size: 512KiB, 10MiB, 1GiB, or a number of bytes",
        })
    }
}

/// A rate: `100/s`, `6000/min`, `10000/day` (also `/h`, `/hour`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many events are allowed per `per`.
    pub count: u64,
    /// The period the count refers to.
    pub per: StdDuration,
}

/// Parses a rate written `N/unit`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad =
        || format!("invalid rate `{text}`: expected a value like 100/s, 6000/min or 10000/day");
    let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!(
            "invalid rate `{text}`: the count must be at least 1"
        ));
    }
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Rate {
        count,
        per: StdDuration::from_secs(secs),
    })
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_rate(&text).map_err(de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        s.serialize_str(&format!("{}/{unit}", self.count))
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9]+\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$",
            "description": "A rate: 100/s, 6000/min, 10000/day",
        })
    }
}

/// A percentage 0–100, written `20%` or as a bare number.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// The share as a fraction in 0.0–1.0.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

fn check_percent(v: f64) -> Result<Percent, String> {
    if (0.0..=100.0).contains(&v) {
        Ok(Percent(v))
    } else {
        Err(format!("invalid percentage {v}: must be between 0 and 100"))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage like 20% or a number 0-100")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
                check_percent(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
                check_percent(v as f64).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
                check_percent(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                let n = v.trim().strip_suffix('%').unwrap_or(v).trim();
                let f: f64 = n.parse().map_err(|_| {
                    E::custom(format!(
                        "invalid percentage `{v}`: expected a value like 20%"
                    ))
                })?;
                check_percent(f).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*%?\s*$" },
                { "type": "number", "minimum": 0, "maximum": 100 }
            ],
            "description": "A percentage: 20% or a number 0-100",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("250ms").unwrap(),
            StdDuration::from_millis(250)
        );
        assert_eq!(parse_duration("5m").unwrap(), StdDuration::from_secs(300));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("100KB").unwrap(), 100_000);
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn rates() {
        let r = parse_rate("6000/min").unwrap();
        assert_eq!((r.count, r.per.as_secs()), (6000, 60));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/fortnight").is_err());
    }

    #[test]
    fn percents() {
        let p: Percent = serde_json::from_str("\"20%\"").unwrap();
        assert_eq!(p.0, 20.0);
        let p: Percent = serde_json::from_str("50").unwrap();
        assert_eq!(p.fraction(), 0.5);
        assert!(serde_json::from_str::<Percent>("101").is_err());
    }
}
