//! Keys a body repeats within one object (`{"replicas": 1, "replicas": 2}`), which
//! `fieldValidation` reports as duplicate fields. Parsing into a `serde_json::Value` keeps the
//! last one silently, so the raw body is walked once more.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Paths of the repeated keys of a JSON body (empty when it does not parse: the real parse
/// reports that).
pub fn in_json(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = Walk::root(&mut found).deserialize(&mut deserializer);
    found
}

/// Paths of the repeated keys of a YAML (or JSON) apply body.
pub fn in_yaml(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let _ = Walk::root(&mut found).deserialize(serde_yaml::Deserializer::from_slice(body));
    found
}

/// Walks one value at `path`, recording repeated keys.
struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'a> Walk<'a> {
    fn root(found: &'a mut Vec<String>) -> Self {
        Self {
            path: String::new(),
            found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let item = Walk {
                path: format!("{}[{index}]", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_found_with_their_paths_in_json_and_yaml() {
        let json = br#"{"spec": {"replicas": 1, "replicas": 2, "list": [{"a": 1, "a": 2}]}}"#;
        assert_eq!(in_json(json), ["spec.replicas", "spec.list[0].a"]);
        assert!(in_json(br#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_empty());
        assert!(in_json(b"not json").is_empty());
        let yaml = b"spec:\n  replicas: 1\n  replicas: 2\n";
        assert_eq!(in_yaml(yaml), ["spec.replicas"]);
    }
}
