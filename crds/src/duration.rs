//! `Duration`: a human-readable span ("100ms", "30s", "5m", "1h30m") for spec fields.
//!
//! Kubernetes users write durations as Go-style strings; this newtype parses them with
//! `humantime`, prints them back in the shortest exact unit, and tells the CRD schema the
//! accepted pattern so the API server rejects typos before any controller sees them.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the CRD schema enforces for every duration field.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// A non-negative span of time written as a string such as `"30s"` or `"1h30m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// The standard-library duration, for timers.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid_shape = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, 'h' | 'm' | 's'))
            && s.starts_with(|c: char| c.is_ascii_digit());
        if !valid_shape {
            return Err(format!(
                "invalid duration {s:?}: expected digits with units ms, s, m or h, e.g. \"30s\""
            ));
        }
        humantime::parse_duration(s)
            .map(Self)
            .map_err(|e| format!("invalid duration {s:?}: {e}"))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for (text, ms) in [
            ("100ms", 100),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms);
        }
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
        assert_eq!(Duration::from_secs(120).to_string(), "2m");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "30", "-1s", "1.5s", "1 s", "abc", "s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be rejected");
        }
    }
}
