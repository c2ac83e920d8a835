//! Paths to fields inside an object (`spec.containers[0].foo`), as the API server names them
//! in strict decoding errors and warnings.

use std::fmt;

use serde_json::Value;

/// One step: an object key or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A path from the object's root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// Appends a step.
    pub fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    /// Removes the last step.
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// The value at this path in `object`.
    pub fn get<'v>(&self, object: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(object, |at, segment| match segment {
            Segment::Key(key) => at.get(key),
            Segment::Index(i) => at.get(i),
        })
    }

    /// Removes the field at this path from `object` (list items are never removed: paths of
    /// unknown fields end in a key).
    pub fn remove(&self, object: &mut Value) {
        let Some((Segment::Key(last), parents)) = self.0.split_last() else {
            return;
        };
        let mut at = object;
        for segment in parents {
            let next = match segment {
                Segment::Key(key) => at.get_mut(key),
                Segment::Index(i) => at.get_mut(i),
            };
            let Some(next) = next else { return };
            at = next;
        }
        if let Some(map) = at.as_object_mut() {
            map.remove(last);
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_print_as_the_api_server_names_fields_and_remove_them() {
        let mut path = FieldPath::default();
        path.push(Segment::Key("spec".into()));
        path.push(Segment::Key("containers".into()));
        path.push(Segment::Index(0));
        path.push(Segment::Key("foo".into()));
        assert_eq!(path.to_string(), "spec.containers[0].foo");
        let mut object = json!({"spec": {"containers": [{"name": "a", "foo": 1}]}});
        assert_eq!(path.get(&object), Some(&json!(1)));
        path.remove(&mut object);
        assert_eq!(object, json!({"spec": {"containers": [{"name": "a"}]}}));
    }
}
