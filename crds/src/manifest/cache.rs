//! Reusing the parse of documents that did not change. A reload of 10,000 keys spent most of
//! its time turning unchanged YAML into the same objects again, so files are split into their
//! documents textually, each document's text is hashed, and a document seen in the previous
//! read is taken from the cache instead of parsed. Only a read that parses cleanly uses the
//! split: a document that fails is parsed again with its whole file, whose error (and document
//! number) is the one reported. Documents holding a Secret are kept like any other: parsing
//! 10,000 key Secrets again was two thirds of a one-key reload. Their plaintexts stay in
//! memory while the file holds the same text, and a text no longer there is dropped when the
//! read that missed it ends (in Kubernetes mode the Secret watch keeps every Secret anyway).

use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_128;

use super::{ManifestError, Manifests, Object, add_documents};
use crate::compile::{ConfigError, rule_errors};

/// What one document's text holds, checked against the CRDs' rules once.
struct Document {
    /// Its objects (`None` for an empty document).
    objects: Vec<Option<Object>>,
    /// What the CEL rules found wrong with them.
    rule_errors: Vec<ConfigError>,
}

type Parsed = Arc<Document>;

/// Parsed documents by the hash of their text, from this read and the one before. Its
/// `Debug` shows counts only: the documents may hold Secrets.
#[derive(Default)]
pub struct DocumentCache {
    /// Documents of the read in progress.
    current: HashMap<u128, Parsed>,
    /// Documents of the previous read not seen again yet (empty between reads).
    previous: HashMap<u128, Parsed>,
    /// Documents parsed (not reused) since [`DocumentCache::begin`], for the reload's log.
    parsed: usize,
    /// The rule errors of this read's documents, in order.
    rule_errors: Vec<ConfigError>,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCache")
            .field("documents", &self.current.len())
            .field("parsed", &self.parsed)
            .finish_non_exhaustive()
    }
}

impl DocumentCache {
    /// Starts a read: what the last read parsed becomes reusable.
    pub fn begin(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        self.parsed = 0;
        self.rule_errors.clear();
    }

    /// Ends a read: documents it did not see again are forgotten now, so an edited or
    /// removed Secret's old text (a key rotated because it leaked) is not kept until the
    /// next read.
    pub fn end(&mut self) {
        self.previous = HashMap::new();
    }

    /// What the CRDs' CEL rules found in the documents read since [`DocumentCache::begin`]
    /// ([`crate::compile::rule_errors`] of the same objects, checked once per document text):
    /// compile the objects as `admitted` and add these.
    pub fn take_rule_errors(&mut self) -> Vec<ConfigError> {
        std::mem::take(&mut self.rule_errors)
    }

    /// Documents parsed rather than reused since [`DocumentCache::begin`].
    pub fn parsed(&self) -> usize {
        self.parsed
    }

    fn get(&mut self, key: u128) -> Option<Parsed> {
        if let Some(parsed) = self.previous.remove(&key) {
            self.current.insert(key, Arc::clone(&parsed));
            return Some(parsed);
        }
        self.current.get(&key).cloned()
    }
}

impl Manifests {
    /// [`Manifests::add_yaml`], reusing `cache`'s objects for documents whose text it has
    /// seen: the same objects and the same errors, in the same order.
    pub fn add_yaml_cached(
        &mut self,
        source_name: &str,
        text: &str,
        cache: &mut DocumentCache,
    ) -> Result<(), ManifestError> {
        let mut objects = Vec::new();
        for document in split_documents(text) {
            let key = xxh3_128(document.as_bytes());
            let parsed = match cache.get(key) {
                Some(parsed) => parsed,
                None => match parse(document) {
                    Some(parsed) => {
                        cache.parsed += 1;
                        cache.current.insert(key, Arc::clone(&parsed));
                        parsed
                    }
                    // The whole file again, for the error as `add_yaml` words it.
                    None => return self.add_yaml(source_name, text),
                },
            };
            objects.push(parsed);
        }
        for parsed in objects {
            for object in parsed.objects.iter().flatten() {
                self.push_copy(object);
            }
            cache.rule_errors.extend(parsed.rule_errors.iter().cloned());
        }
        Ok(())
    }
}

/// The objects of one document's text and their rule errors, or `None` when any of it fails
/// to parse.
fn parse(text: &str) -> Option<Parsed> {
    let mut objects = Vec::new();
    let mut checked = Manifests::default();
    add_documents(text, |_, object| {
        if let Some(object) = &object {
            checked.push_copy(object);
        }
        objects.push(object);
        Ok(())
    })
    .ok()?;
    Some(Arc::new(Document {
        objects,
        rule_errors: rule_errors(&checked),
    }))
}

/// The text of each document: a line starting with the `---` marker begins one. YAML ends a
/// document at such a line wherever it appears (inside a block scalar too), so the pieces
/// are the documents the parser would find; text before the first marker is a piece too.
fn split_documents(text: &str) -> impl Iterator<Item = &str> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > 0 && is_marker(line) {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    starts
        .windows(2)
        .map(move |w| &text[w[0]..w[1]])
        .collect::<Vec<_>>()
        .into_iter()
}

fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {name: k}\nspec: {secretName: k, owner: team}\n";
    const SECRET: &str =
        "apiVersion: v1\nkind: Secret\nmetadata: {name: k}\nstringData: {apiKey: x}\n";

    fn names(m: &Manifests) -> Vec<String> {
        let mut names: Vec<String> = m
            .api_keys
            .iter()
            .map(|k| format!("key/{}", k.metadata.name.as_deref().unwrap_or("")))
            .collect();
        names.extend(
            m.secrets
                .iter()
                .map(|s| format!("secret/{}", s.metadata.name.as_deref().unwrap_or(""))),
        );
        names
    }

    #[test]
    fn documents_are_split_where_the_parser_splits_them() {
        let text = format!(
            "# leading comment\n---\n{KEY}--- \n{SECRET}---\n---\nkind: |\n  ---not a marker\n----\n"
        );
        let pieces: Vec<&str> = split_documents(&text).collect();
        assert_eq!(pieces.len(), 5, "{pieces:#?}");
        assert_eq!(pieces.concat(), text);
        assert!(pieces[4].starts_with("---\nkind: |\n  ---not a marker\n----\n"));
    }

    #[test]
    fn unchanged_documents_are_reused_and_give_the_same_objects() {
        let text = format!(
            "{KEY}---\n{SECRET}---\n{}",
            KEY.replace("name: k}", "name: k2}")
        );
        let mut cache = DocumentCache::default();
        cache.begin();
        let mut first = Manifests::default();
        first.add_yaml_cached("a.yaml", &text, &mut cache).unwrap();
        assert_eq!(cache.parsed(), 3);
        let mut plain = Manifests::default();
        plain.add_yaml("a.yaml", &text).unwrap();
        assert_eq!(names(&first), names(&plain));

        let edited = text.replace(
            "owner: team}\n---\napiVersion: v1",
            "owner: t2}\n---\napiVersion: v1",
        );
        assert_eq!(cache.current.len(), 3, "every document is kept");
        cache.begin();
        let mut second = Manifests::default();
        second
            .add_yaml_cached("a.yaml", &edited, &mut cache)
            .unwrap();
        assert_eq!(cache.parsed(), 1, "only the edited document is parsed");
        cache.end();
        assert_eq!(second.api_keys[0].spec.owner, "t2");
        assert!(
            cache.previous.is_empty(),
            "the edited document's old text is gone"
        );
        assert_eq!(cache.current.len(), 3);
        assert_eq!(names(&second), names(&plain));
    }

    #[test]
    fn a_failing_document_reports_the_whole_file_s_error() {
        let text = format!("{KEY}---\n{SECRET}---\nkind: Nope\napiVersion: v1\n");
        let mut cache = DocumentCache::default();
        cache.begin();
        let cached = Manifests::default()
            .add_yaml_cached("b.yaml", &text, &mut cache)
            .unwrap_err()
            .to_string();
        let plain = Manifests::default()
            .add_yaml("b.yaml", &text)
            .unwrap_err()
            .to_string();
        assert_eq!(cached, plain);
        assert!(cached.starts_with("b.yaml: document 3: "), "{cached}");
    }

    #[test]
    fn rule_errors_are_found_once_and_reported_on_every_read() {
        // Breaks a CEL rule of LlmProvider: an openaiCompatible provider needs a baseUrl.
        let text = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: p}\nspec: {type: openaiCompatible}\n";
        let plain = rule_errors(&{
            let mut m = Manifests::default();
            m.add_yaml("p.yaml", text).unwrap();
            m
        });
        assert!(!plain.is_empty(), "the example breaks no rule");
        let mut cache = DocumentCache::default();
        for _ in 0..2 {
            cache.begin();
            Manifests::default()
                .add_yaml_cached("p.yaml", text, &mut cache)
                .unwrap();
            assert_eq!(cache.take_rule_errors(), plain);
        }
        assert_eq!(cache.parsed(), 0, "the second read reused the document");
    }
}
