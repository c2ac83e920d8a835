//! What one write asks for (`fieldManager`, `fieldValidation`, the verb) and what it answers
//! besides the object (`Warning` headers), with the API server's wording for unknown and
//! duplicate fields.
//!
//! Without `fieldValidation` this server is **Strict**, where a real one (1.27+) warns: the
//! stand-in is there to catch unknown fields our own code writes, which a real server would
//! drop with no more than a warning nobody reads.

use std::collections::HashMap;

use serde_json::Value;

use crate::resources::ResourceType;
use crate::status::ApiError;

/// The `fieldValidation` directive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown or duplicate fields fail the request with 400 (this server's default).
    #[default]
    Strict,
    /// They are dropped, with one `Warning` header each.
    Warn,
    /// They are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// Reads `?fieldValidation=`; absent or empty is Strict here (see the module doc).
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        match params.get("fieldValidation").map(String::as_str) {
            None | Some("" | "Strict") => Ok(Self::Strict),
            Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// The kind of write, which decides how a bad body is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH with a merge or JSON patch.
    Patch,
    /// PATCH with an apply patch (server-side apply).
    Apply,
}

/// One write request's options and side answers.
#[derive(Debug)]
pub struct WriteRequest {
    /// The field manager.
    pub manager: String,
    /// The verb.
    pub verb: Verb,
    /// The `fieldValidation` directive.
    pub validation: FieldValidation,
    /// Paths of keys the body repeats (reported with the unknown fields, then cleared).
    pub duplicates: Vec<String>,
    /// `Warning` header texts to send back.
    pub warnings: Vec<String>,
}

impl WriteRequest {
    /// A Strict request by `manager`.
    pub fn new(manager: &str, verb: Verb) -> Self {
        Self {
            manager: manager.to_owned(),
            verb,
            validation: FieldValidation::Strict,
            duplicates: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Reports `unknown` field paths (and the body's duplicate keys) as the directive says:
    /// Strict fails, Warn adds warnings, Ignore says nothing. Apply patches fail on unknown
    /// fields whatever the directive, as the real server's typed patch conversion does (with
    /// its 500).
    pub fn settle(
        &mut self,
        rtype: &ResourceType,
        object: &Value,
        unknown: &[String],
    ) -> Result<(), ApiError> {
        let duplicates = std::mem::take(&mut self.duplicates);
        if self.verb == Verb::Apply {
            if !unknown.is_empty() {
                return Err(typed_patch_error(rtype, object, unknown));
            }
            return self.report(&duplicates, &[], |problems| {
                ApiError::bad_request(format!("error strict decoding YAML: {problems}"))
            });
        }
        let verb = self.verb;
        self.report(&duplicates, unknown, |problems| {
            let message = format!("strict decoding error: {problems}");
            match verb {
                Verb::Patch => ApiError::bad_request(message),
                _ => ApiError::bad_request(cannot_handle(rtype, &message)),
            }
        })
    }

    fn report(
        &mut self,
        duplicates: &[String],
        unknown: &[String],
        error: impl FnOnce(String) -> ApiError,
    ) -> Result<(), ApiError> {
        let problems: Vec<String> = duplicates
            .iter()
            .map(|p| format!("duplicate field \"{p}\""))
            .chain(unknown.iter().map(|p| format!("unknown field \"{p}\"")))
            .collect();
        match self.validation {
            _ if problems.is_empty() => Ok(()),
            FieldValidation::Strict => Err(error(problems.join(", "))),
            FieldValidation::Warn => {
                self.warnings.extend(problems);
                Ok(())
            }
            FieldValidation::Ignore => Ok(()),
        }
    }

    /// A body that does not decode (a value of the wrong type), worded per verb as the real
    /// server words it.
    pub fn decode_error(&self, rtype: &ResourceType, object: &Value, reason: &str) -> ApiError {
        match self.verb {
            Verb::Create | Verb::Update => ApiError::bad_request(cannot_handle(rtype, reason)),
            Verb::Patch => ApiError::invalid("", "", "patch", reason),
            Verb::Apply => typed_patch_error(rtype, object, &[reason.to_owned()]),
        }
    }
}

/// `Deployment in version "v1" cannot be handled as a Deployment: …`.
fn cannot_handle(rtype: &ResourceType, reason: &str) -> String {
    format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: {reason}",
        kind = rtype.kind,
        version = rtype.version
    )
}

/// The server-side apply failure for fields the type does not declare: a plain error, so a
/// 500 with no reason (kubernetes/kubernetes#122480).
fn typed_patch_error(rtype: &ResourceType, object: &Value, problems: &[String]) -> ApiError {
    let meta = |key: &str| {
        object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let errors: Vec<String> = problems
        .iter()
        .map(|p| match p.split_once(": ") {
            Some(_) => format!(".{p}"),
            None => format!(".{p}: field not declared in schema"),
        })
        .collect();
    let errors = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    ApiError::internal(format!(
        "failed to create typed patch object ({}/{}; {}/{}, Kind={}): {errors}",
        meta("namespace"),
        meta("name"),
        rtype.group,
        rtype.version,
        rtype.kind
    ))
}
