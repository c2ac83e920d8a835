//! API key format, identifiers and keyed hashes.
//!
//! A key is `sk-lgw-` + 32 base62 random characters (~190 bits from the OS CSPRNG) + a 6
//! character base62 CRC32 checksum of everything before it. The prefix lets secret scanners
//! find leaked keys; the checksum lets the gateway reject typos and lookalikes before any lookup.
//! Gateways store only `HMAC-SHA256(pepper, key)`: a fast keyed hash is enough because keys are
//! high-entropy, and the pepper keeps a leaked hash table useless without the gateway's secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Every key starts with this; secret scanners match on it.
pub const KEY_PREFIX: &str = "sk-lgw-";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Total length of a well-formed key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HASH_SCHEME: &str = "hmac-sha256:";

/// Why a presented string is not a usable key, decided without any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Wrong prefix, length or alphabet.
    #[error("not an llm-gateway API key")]
    Malformed,
    /// Right shape, but the checksum does not match: a typo or a forgery.
    #[error("API key checksum mismatch")]
    BadChecksum,
}

/// Generates a new random key.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(KEY_PREFIX);
    let mut filled = 0;
    while filled < RANDOM_LEN {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes)?;
        // Rejection sampling keeps every character equally likely (248 = 4 * 62).
        for b in bytes.into_iter().filter(|b| *b < 248) {
            if filled == RANDOM_LEN {
                break;
            }
            key.push(char::from(BASE62[usize::from(b % 62)]));
            filled += 1;
        }
    }
    let checksum = checksum(&key);
    key.push_str(&checksum);
    Ok(key)
}

/// Checks prefix, length, alphabet and checksum. Cheap; call before any lookup.
pub fn check_format(key: &str) -> Result<(), KeyFormatError> {
    let shaped = key.len() == KEY_LEN
        && key.starts_with(KEY_PREFIX)
        && key.as_bytes()[KEY_PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric);
    if !shaped {
        return Err(KeyFormatError::Malformed);
    }
    let (body, sum) = key.split_at(KEY_LEN - CHECKSUM_LEN);
    if checksum(body).as_bytes().ct_eq(sum.as_bytes()).into() {
        Ok(())
    } else {
        Err(KeyFormatError::BadChecksum)
    }
}

/// The public identifier of a well-formed key (`lgw_` + 8 random characters), safe to log.
pub fn key_id(key: &str) -> String {
    let start = KEY_PREFIX.len();
    let end = (start + 8).min(key.len());
    format!("lgw_{}", key.get(start..end).unwrap_or_default())
}

/// The keyed hash gateways store and compare, as `hmac-sha256:<hex>`.
pub fn hash(pepper: &[u8], key: &str) -> String {
    format!("{HASH_SCHEME}{}", hex::encode(hash_bytes(pepper, key)))
}

/// The raw 32-byte keyed hash, for lookups on the request path.
pub fn hash_bytes(pepper: &[u8], key: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper).unwrap_or_else(|_| unreachable!());
    mac.update(key.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Parses a stored `hmac-sha256:<hex>` hash back into bytes.
pub fn parse_hash(stored: &str) -> Option<[u8; 32]> {
    let hex_part = stored.strip_prefix(HASH_SCHEME)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert_eq!(check_format(&a), Ok(()));
        assert!(key_id(&a).starts_with("lgw_"));
        assert_eq!(key_id(&a).len(), 12);
    }

    #[test]
    fn one_changed_character_breaks_the_checksum() {
        let key = generate().unwrap();
        let mut bytes = key.into_bytes();
        let i = KEY_PREFIX.len() + 3;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(check_format(&tampered), Err(KeyFormatError::BadChecksum));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "sk-lgw-",
            "sk-other-0123456789012345678901234567890123456",
            "sk-lgw-ÿ",
        ] {
            assert_eq!(check_format(bad), Err(KeyFormatError::Malformed), "{bad}");
        }
    }

    #[test]
    fn hash_round_trips_and_depends_on_the_pepper() {
        let key = generate().unwrap();
        let stored = hash(b"pepper", &key);
        assert_eq!(parse_hash(&stored), Some(hash_bytes(b"pepper", &key)));
        assert_ne!(hash(b"other", &key), stored);
        assert_eq!(parse_hash("sha256:00"), None);
    }
}
