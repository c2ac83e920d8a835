//! Describing why a document could not be read without quoting what it holds.
//!
//! serde's messages quote the offending value (`invalid type: string "sk-…", expected a map`)
//! and YAML errors can carry scalars and keys (`invalid value: string "sk-…", expected an
//! integer` for a `!!int` tag). Manifest errors are logged and served on `/health/detailed`,
//! which is unauthenticated, and a Secret value or a credential pasted in the wrong place must
//! reach neither. So every message is rebuilt here from what the schema supplies (the expected
//! type, declared field names) and the *kind* of value found, never from the value itself.
//! Messages not in a known shape are replaced by a fixed text (Secrets and credentials) or
//! lose every quoted part (other documents). Everything is clipped: a 10 MB object name must
//! not become a 10 MB log line.

/// Longest object name, field path or field name quoted in an error.
pub(super) const MAX_NAME_CHARS: usize = 128;

/// Longest schema text (expected types, fixed messages) kept in an error.
const MAX_TEXT_CHARS: usize = 240;

/// YAML errors whose reason is safe to give, by a fragment of serde_yaml's message. The
/// reasons are fixed text: the fragments only select one. Anything else is "not valid YAML"
/// with its line and column.
const SYNTAX_REASONS: [(&str, &str); 12] = [
    ("duplicate entry", "a mapping has the same key twice"),
    ("recursion limit exceeded", "nested too deeply"),
    ("repetition limit exceeded", "too many alias expansions"),
    ("unknown anchor", "an alias names an unknown anchor"),
    ("invalid value: ", "a value does not match its tag"),
    ("invalid type: ", "a value does not match its tag"),
    (
        "mapping values are not allowed",
        "mapping values are not allowed here",
    ),
    ("did not find expected key", "did not find the expected key"),
    ("could not find expected ':'", "a key is missing its ':'"),
    (
        "found unexpected end of stream",
        "unexpected end of the file",
    ),
    (
        "found character that cannot start any token",
        "a character that cannot start any token",
    ),
    (
        "found a tab character",
        "a tab character where indentation is expected",
    ),
];

/// Kinds of value serde reports in `invalid type` and `invalid value` (its `Unexpected`
/// display, which continues with the value itself: only the kind is kept).
const VALUE_KINDS: [(&str, &str); 12] = [
    ("string", "a string"),
    ("integer", "an integer"),
    ("floating point", "a number"),
    ("boolean", "a boolean"),
    ("character", "a character"),
    ("byte array", "bytes"),
    ("unit value", "null"),
    ("Option value", "an optional value"),
    ("sequence", "a list"),
    ("map", "a map"),
    ("unit variant", "an enum variant"),
    ("enum", "an enum"),
];

/// A YAML parse error as its line and column and a fixed reason, never the source text.
pub(super) fn syntax(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    let reason = SYNTAX_REASONS
        .iter()
        .find(|(fragment, _)| text.contains(fragment))
        .map_or("not valid YAML", |(_, reason)| reason);
    match error.location() {
        Some(at) => format!(
            "invalid YAML at line {} column {}: {reason}",
            at.line(),
            at.column()
        ),
        None => format!("invalid YAML: {reason}"),
    }
}

/// Whether a field may hold a credential: everything in a Secret, and any field whose path
/// names a credential or secret (`spec.credentials`, `hs256SecretRef`). Those errors keep
/// neither unknown field names nor free-form messages.
pub(super) fn is_sensitive(kind: &str, path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    kind == "Secret" || path.contains("credential") || path.contains("secret")
}

/// A deserialisation error of a typed object (serde's message for one field) without the
/// value: the expected type and the kind of value found.
pub(super) fn describe(message: &str, sensitive: bool) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = split_expected(rest);
        return format!("expected {expected}, found {}", value_kind(found));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let (found, expected) = split_expected(rest);
        return format!("invalid value ({}), expected {expected}", value_kind(found));
    }
    if message.starts_with("invalid length ") {
        // The length and the expected count, both numbers about the shape, not the content.
        return clip(message, MAX_TEXT_CHARS);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest
            .rsplit_once(", expected ")
            .map_or_else(|| "no variant".to_owned(), |(_, e)| clip(e, MAX_TEXT_CHARS));
        return format!("unknown variant, expected {expected}");
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown_field(rest, sensitive);
    }
    for prefix in ["missing field ", "duplicate field "] {
        if let Some(name) = message.strip_prefix(prefix) {
            // Field names come from the type's derive, not from the document.
            return format!("{prefix}{}", clip(name, MAX_NAME_CHARS));
        }
    }
    if sensitive {
        // Free-form messages (base64 errors quote the offending byte) say nothing safe.
        "invalid value".to_owned()
    } else {
        clip(&strip_quoted(message), MAX_TEXT_CHARS)
    }
}

/// `unknown field `name`, expected …`: the name is the document's own key, kept (it is how a
/// typo is found) except where credentials live.
fn unknown_field(rest: &str, sensitive: bool) -> String {
    let (name, expected) = match rest.rsplit_once(", expected ") {
        Some((name, expected)) => (name, clip(expected, MAX_TEXT_CHARS)),
        None => (
            rest.trim_end_matches(", there are no fields"),
            "no fields".to_owned(),
        ),
    };
    if sensitive {
        format!("unknown field, expected {expected}")
    } else {
        let name = clip(name.trim_matches('`'), MAX_NAME_CHARS);
        format!("unknown field `{name}`, expected {expected}")
    }
}

/// Splits `<found>, expected <what>` at the last `, expected ` (the value, which comes first,
/// may itself contain that text; the expectation comes from the schema).
fn split_expected(rest: &str) -> (&str, String) {
    match rest.rsplit_once(", expected ") {
        Some((found, expected)) => (found, clip(expected, MAX_TEXT_CHARS)),
        None => (rest, "another value".to_owned()),
    }
}

/// The kind of value from serde's `Unexpected` display, as fixed text.
fn value_kind(found: &str) -> &'static str {
    VALUE_KINDS
        .iter()
        .find(|(prefix, _)| found.starts_with(prefix))
        .map_or("a value of another type", |(_, kind)| kind)
}

/// Replaces every `"…"` (with backslash escapes) and `` `…` `` part by an ellipsis; an
/// unterminated one drops the rest of the text.
fn strip_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT_CHARS * 4));
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push_str("\"…\"");
                let mut escaped = false;
                for inner in chars.by_ref() {
                    match (escaped, inner) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => escaped = false,
                    }
                }
            }
            '`' => {
                out.push_str("`…`");
                for inner in chars.by_ref() {
                    if inner == '`' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `text` without control characters (a newline in a name would
/// forge a log line), marked with an ellipsis when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(max + 1)
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk-live-SECRET123";

    #[test]
    fn type_and_value_errors_keep_the_kind_and_the_expectation_only() {
        let typed = describe(
            &format!("invalid type: string \"{SECRET}\", expected a map"),
            true,
        );
        assert_eq!(typed, "expected a map, found a string");
        let value = describe(
            &format!("invalid value: string \"{SECRET}, expected x\", expected an integer"),
            false,
        );
        assert_eq!(value, "invalid value (a string), expected an integer");
        let number = describe("invalid type: integer `12345678`, expected a string", true);
        assert_eq!(number, "expected a string, found an integer");
    }

    #[test]
    fn variants_and_fields_drop_the_value_and_keep_schema_names() {
        let variant = describe(
            &format!("unknown variant `{SECRET}`, expected one of `fake`, `openai`"),
            false,
        );
        assert_eq!(variant, "unknown variant, expected one of `fake`, `openai`");
        let field = describe(
            "unknown field `maxConcurency`, expected `maxConcurrency`",
            false,
        );
        assert!(field.contains("`maxConcurency`"), "{field}");
        let hidden = describe(
            &format!("unknown field `{SECRET}`, there are no fields"),
            true,
        );
        assert_eq!(hidden, "unknown field, expected no fields");
        assert_eq!(
            describe("missing field `name`", true),
            "missing field `name`"
        );
    }

    #[test]
    fn free_form_messages_lose_quoted_parts_or_everything_when_sensitive() {
        let base64 = "Invalid symbol 45, offset 3.";
        assert_eq!(describe(base64, true), "invalid value");
        let duration = describe(&format!("invalid duration \"{SECRET}\": bad unit"), false);
        assert_eq!(duration, "invalid duration \"…\": bad unit");
        let escaped = strip_quoted("a \"x\\\"y\" b `c` d \"unterminated");
        assert_eq!(escaped, "a \"…\" b `…` d \"…\"");
    }

    #[test]
    fn syntax_errors_give_the_position_and_a_fixed_reason() {
        for text in [
            format!("s:\n  apiKey: \"{SECRET}\" trailing\n"),
            format!("s: {{apiKey: {SECRET}\n"),
            format!("s:\n  apiKey: !!int {SECRET}\n"),
            format!("s: {{{SECRET}: 1, {SECRET}: 2}}\n"),
        ] {
            let error = serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap_err();
            let message = syntax(&error);
            assert!(!message.contains("SECRET"), "{message} <- {error}");
            assert!(message.starts_with("invalid YAML"), "{message}");
            assert!(message.contains(" line "), "{message}");
        }
    }

    #[test]
    fn sensitive_paths_and_clipping() {
        assert!(is_sensitive("Secret", "metadata.name"));
        assert!(is_sensitive("LlmProvider", "spec.credentials"));
        assert!(!is_sensitive("RoutePolicy", "spec.routes[0].model"));
        assert_eq!(clip("ab\ncd", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
