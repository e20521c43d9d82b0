//! Small self-contained helpers: ids, a tiny PRNG, JSON string escaping, base64.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64 step: advances `state` and returns the next pseudo-random value.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A process-wide, non-cryptographic random `u64` (good enough for ids).
pub(crate) fn random_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        RandomState::new().hash_one(nanos)
    });
    let mut state = seed
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0xA076_1D64_78BD_642F);
    splitmix64(&mut state)
}

/// `req_` followed by 32 lowercase hex digits.
pub(crate) fn request_id() -> String {
    format!("req_{:016x}{:016x}", random_u64(), random_u64())
}

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `prefix` followed by `n` random characters of `alphabet` (at most 64 symbols).
fn random_id(prefix: &str, alphabet: &[u8], n: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + n);
    s.push_str(prefix);
    let mut bits = random_u64();
    let mut left = 10; // 10 x 6 bits fit in a u64
    for _ in 0..n {
        if left == 0 {
            bits = random_u64();
            left = 10;
        }
        s.push(alphabet[(bits % alphabet.len() as u64) as usize] as char);
        bits /= 64;
        left -= 1;
    }
    s
}

/// `chatcmpl-` followed by 29 random alphanumerics, like OpenAI's ids.
pub(crate) fn completion_id() -> String {
    random_id("chatcmpl-", ALNUM, 29)
}

/// `call_` followed by 24 lowercase hex digits: an OpenAI tool call id.
pub(crate) fn call_id() -> String {
    random_id("call_", HEX, 24)
}

/// An Anthropic-style id: `prefix` then `01` and 22 alphanumerics, like
/// `msg_01XFDUDYJgAACzvnptvVoYEL` or `toolu_01A09q90qw90lq917835lq9`.
pub(crate) fn anthropic_id(prefix: &str) -> String {
    random_id(&format!("{prefix}01"), ALNUM, 22)
}

/// An Anthropic `request-id`: `req_011C` and 20 alphanumerics (`req_011CaDvrymxizFC1oij4M9EK`).
pub(crate) fn anthropic_request_id() -> String {
    random_id("req_011C", ALNUM, 20)
}

/// A Gemini `responseId`: 22 alphanumerics.
pub(crate) fn gemini_response_id() -> String {
    random_id("", ALNUM, 22)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// FNV-1a over bytes; used to seed deterministic embeddings.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Appends `s` as a JSON string literal (with quotes) to `out`.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1F => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xF)] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `s` as a JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::new();
    push_json_str(&mut out, s);
    out
}

/// Standard (padded) base64.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn json_escaping_round_trips() {
        let s = "a\"b\\c\nd\te\u{1}f é 😀";
        let lit = json_str(s);
        let back: String = serde_json::from_str(&lit).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn ids_have_openai_shape() {
        let id = completion_id();
        assert!(id.starts_with("chatcmpl-"));
        assert_eq!(id.len(), 38);
        assert!(id[9..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let r = request_id();
        assert_eq!(r.len(), 36);
        assert!(r[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(completion_id(), completion_id());
        let c = call_id();
        assert!(c.starts_with("call_") && c.len() == 29, "{c}");
        assert!(c[5..].bytes().all(|b| b.is_ascii_hexdigit()));
        let m = anthropic_id("msg_");
        assert!(m.starts_with("msg_01") && m.len() == 28, "{m}");
        assert!(m[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let r = anthropic_request_id();
        assert!(r.starts_with("req_011C") && r.len() == 28, "{r}");
        assert_eq!(gemini_response_id().len(), 22);
    }
}
