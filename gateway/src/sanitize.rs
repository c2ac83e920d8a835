//! Upstream error messages, made safe to show a client.
//!
//! A provider's 400, 413, 422 or 429 message is worth passing on (it says what was wrong with
//! the request), but providers quote things in it that belong to the gateway's operator, not
//! to the caller: the provider key the gateway sent (OpenAI quotes it on a wrong key, partly
//! starred), the organisation or project the key belongs to, a bearer token, a Google API
//! key. [`sanitize`] masks those and caps the length, so a caller learns the reason and never
//! the operator's credentials, and an upstream cannot make the gateway relay megabytes. It
//! only runs on the error path; a successful request never reaches it.

use std::sync::LazyLock;

use regex::Regex;

/// Longest message passed on, in characters; a longer one ends in `…` at this length. Provider
/// messages are a sentence or two; 512 keeps every real one whole.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// What replaces a secret. Secrets with a telling prefix keep it (`sk-***`), so the message
/// still says which kind of credential the upstream complained about.
const MASK: &str = "***";

/// Configured credentials shorter than this are not searched for: masking every occurrence of
/// a two-letter test key would garble the message and protects nothing.
const MIN_CREDENTIAL_LEN: usize = 8;

/// Where scanning stops: enough bytes for [`MAX_MESSAGE_CHARS`] characters of any width plus a
/// secret straddling the cut, so a huge message costs no more than that.
const SCAN_BYTES: usize = MAX_MESSAGE_CHARS * 4 + 256;

/// The secret shapes, each with its replacement, applied in order.
static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // JSON Web Tokens and other three-segment base64url strings (an unsigned JWT has an
        // empty third segment).
        (
            r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*|\b[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\b",
            MASK,
        ),
        // `Bearer <token>` in any case, when the token looks like one (8+ characters).
        (r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}[A-Za-z0-9_~+/=-]", "$1 ***"),
        // OpenAI-style keys (sk-, sk-proj-, sk-ant-, sk-or-, sk-svcacct-), partly starred too,
        // and keys that merely contain one (`key-sk-…`).
        (r"[A-Za-z0-9_-]*\bsk-[A-Za-z0-9_*-]{6,}", "sk-***"),
        // Google API keys.
        (r"\bAIza[0-9A-Za-z_-]{20,}", "AIza***"),
        // Organisation and project ids (with a digit or capital, so `org-wide` stays).
        (r"\borg-[a-z]*[A-Z0-9][A-Za-z0-9]*", "org-***"),
        (r"\bproj_[a-z]*[A-Z0-9][A-Za-z0-9]*", "proj_***"),
        // Partly starred keys of any provider (`gsk_abcd****wxyz`), as error messages quote them.
        (r"\b[A-Za-z0-9_-]{2,}\*{4,}[A-Za-z0-9_-]*", MASK),
        // 32- and 64-digit hexadecimal keys (Azure, and secrets hex-encoded).
        (r"\b[0-9A-Fa-f]{32}(?:[0-9A-Fa-f]{32})?\b", MASK),
    ]
    .into_iter()
    .filter_map(|(pattern, replacement)| Some((Regex::new(pattern).ok()?, replacement)))
    .collect()
});

/// `message` with credentials masked and at most [`MAX_MESSAGE_CHARS`] characters.
///
/// Masked: exact occurrences of `credential` (the provider key this call sent); OpenAI-style
/// keys (`sk-…`); Google API keys (`AIza…`); `Bearer <token>`; organisation (`org-…`) and
/// project (`proj_…`) ids; 32-digit hexadecimal keys (Azure); JSON Web Tokens and other
/// three-segment base64url strings. Everything is masked before the cap applies, so a cut
/// never leaves part of a secret.
pub fn sanitize(message: &str, credential: Option<&str>) -> String {
    let mut text = prefix(message, SCAN_BYTES).to_owned();
    if let Some(secret) = credential.filter(|s| s.len() >= MIN_CREDENTIAL_LEN) {
        text = text.replace(secret, MASK);
    }
    for (pattern, replacement) in PATTERNS.iter() {
        if let std::borrow::Cow::Owned(replaced) = pattern.replace_all(&text, *replacement) {
            text = replaced;
        }
    }
    cap(text)
}

/// The longest prefix of `text` of at most `bytes` bytes ending on a character boundary.
fn prefix(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to [`MAX_MESSAGE_CHARS`] characters, the last one `…` when cut.
fn cap(text: String) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => text,
        Some(_) => {
            let mut capped: String = text.chars().take(MAX_MESSAGE_CHARS - 1).collect();
            capped.push('…');
            capped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(message: &str) -> String {
        sanitize(message, None)
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(PATTERNS.len(), 8);
    }

    #[test]
    fn plain_messages_pass_unchanged() {
        for message in [
            "This model's maximum context length is 8192 tokens. However, you requested 9000.",
            "Invalid value for 'temperature': expected a number <= 2, got 3 (param: gpt-4.1).",
            "Rate limit reached for gpt-4o-mini on tokens per min (TPM): limit 200000.",
            "Request req_0123456789abcdef0123456789abcdef failed; see api.openai.com/docs.",
            "The org-wide quota is spent; the task-management project is fine. Bearer token missing.",
            "Überschreitung: zu viele Anfragen — bitte später erneut versuchen. 🙂",
            "",
        ] {
            assert_eq!(clean(message), message);
        }
    }

    #[test]
    fn openai_style_keys_are_masked_with_their_prefix_kept() {
        for key in [
            "sk-abcdefghij0123456789",
            "sk-proj-abcdef1234567890abcdef",
            "sk-ant-api03-AbCdEf_123-xyz",
            "sk-or-v1-0123456789abcdef",
            "sk-svcacct-Zz9Yy8Xx7",
            "sk-proj-abc1********************wxyz",
        ] {
            let message = format!("Incorrect API key provided: {key}. Find your key at …");
            assert_eq!(
                clean(&message),
                "Incorrect API key provided: sk-***. Find your key at …",
                "{key}"
            );
        }
        assert_eq!(clean("key=\"key-sk-0123456789ab\""), "key=\"sk-***\"");
        assert_eq!(
            clean("Invalid API Key gsk_abcd********************wxyz."),
            "Invalid API Key ***."
        );
    }

    #[test]
    fn google_api_keys_are_masked() {
        let key = format!("AIza{}", "Sy0123456789abcdefghijklmnopqrstuvw");
        assert_eq!(key.len(), 39);
        assert_eq!(
            clean(&format!("API key {key} not valid")),
            "API key AIza*** not valid"
        );
    }

    #[test]
    fn bearer_tokens_are_masked_in_any_case() {
        assert_eq!(
            clean("header was Bearer abc.DEF-123_x/y+z== (invalid)"),
            "header was Bearer *** (invalid)"
        );
        assert_eq!(clean("bearer\tsecret-token-9."), "bearer ***.");
        assert_eq!(clean("Bearer short"), "Bearer short");
    }

    #[test]
    fn organisation_and_project_ids_are_masked() {
        assert_eq!(
            clean("No such organization: org-AbCdEf123456."),
            "No such organization: org-***."
        );
        assert_eq!(
            clean("project proj_Xy12ab34Cd56 is archived"),
            "project proj_*** is archived"
        );
        assert_eq!(clean("org-wide proj_name"), "org-wide proj_name");
    }

    #[test]
    fn azure_hex_keys_are_masked() {
        assert_eq!(
            clean("Access denied for key 0123456789abcdefABCDEF0123456789."),
            "Access denied for key ***."
        );
        // 31 and 33 digits are not keys.
        let short = "0123456789abcdef0123456789abcde";
        assert_eq!(clean(short), short);
        let long = "0123456789abcdef0123456789abcdef0";
        assert_eq!(clean(long), long);
        let hex64 = "0123456789abcdef".repeat(4);
        assert_eq!(clean(&format!("secret {hex64}.")), "secret ***.");
    }

    #[test]
    fn json_web_tokens_are_masked() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz";
        assert_eq!(
            clean(&format!("token {jwt} expired.")),
            "token *** expired."
        );
        assert_eq!(clean("unsigned eyJhbGciOiJub25lIn0.e30."), "unsigned ***");
        let opaque = "AAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBB.CCCCCCCCCCCCCCCCCCCC";
        assert_eq!(clean(opaque), MASK);
        for benign in ["api.openai.com", "gpt-4.1.2", "v1.2.3", "a.b.c.d"] {
            assert_eq!(clean(benign), benign);
        }
    }

    #[test]
    fn the_configured_credential_is_masked_wherever_it_appears() {
        let credential = "plain-Credential!42";
        let message = "bad key 'plain-Credential!42' (xplain-Credential!42y)";
        assert_eq!(sanitize(message, Some(credential)), "bad key '***' (x***y)");
        // Too short to search for: left alone rather than garbling the message.
        assert_eq!(sanitize("a key of abc", Some("abc")), "a key of abc");
    }

    #[test]
    fn long_messages_are_capped_on_a_character_boundary() {
        let long = "é".repeat(10_000);
        let capped = clean(&long);
        assert_eq!(capped.chars().count(), MAX_MESSAGE_CHARS);
        assert!(capped.ends_with('…'));
        let exact = "x".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(clean(&exact), exact);
        let words = "word ".repeat(1_000_000);
        assert_eq!(clean(&words).chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn a_secret_at_the_cap_is_masked_not_cut() {
        let message = format!("{} sk-proj-abcdef1234567890abcdef", "x".repeat(500));
        let cleaned = clean(&message);
        assert!(!cleaned.contains("sk-proj-abc"), "{cleaned}");
        assert!(cleaned.ends_with("sk-***"));
        // Masked first, then cut: the cut may fall inside the mask, never inside the key.
        let message = format!("{} sk-proj-abcdef1234567890abcdef", "x".repeat(508));
        let cleaned = clean(&message);
        assert_eq!(cleaned.chars().count(), MAX_MESSAGE_CHARS);
        assert!(!cleaned.contains("abcdef"), "{cleaned}");
        let huge = format!("{}{}", "a".repeat(3_000), " sk-abcdefghijklmnop");
        assert!(!clean(&huge).contains("sk-abc"));
    }
}
