//! Secrets at rest: AES-256-GCM under the master key, argon2 passwords, generated tokens.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::path::Path;

use crate::StoreError;

/// The 32-byte master key: credentials and the key-hashing key are encrypted under it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey(rand::random())
    }

    /// Base64 (standard or URL-safe) or 64 hex digits, surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<MasterKey, StoreError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| StoreError::MasterKey("not valid hex".into()))?
        } else {
            STANDARD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
                .map_err(|_| {
                    StoreError::MasterKey("must be 32 bytes as base64 or 64 hex digits".into())
                })?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            StoreError::MasterKey(format!("must be 32 bytes, got {}", v.len()))
        })?;
        Ok(MasterKey(arr))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// `SIGNALBOX_MASTER_KEY` if given, else the key file, created (0600) when missing.
    /// Returns the key and whether it was just created.
    pub fn load_or_create(
        env_value: Option<&str>,
        file: &Path,
    ) -> Result<(MasterKey, bool), StoreError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return MasterKey::parse(v)
                .map(|k| (k, false))
                .map_err(|e| StoreError::MasterKey(format!("SIGNALBOX_MASTER_KEY {e}")));
        }
        match std::fs::read_to_string(file) {
            Ok(text) => MasterKey::parse(&text)
                .map(|k| (k, false))
                .map_err(|e| StoreError::MasterKey(format!("{}: {e}", file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                write_secret_file(file, &format!("{}\n", key.to_base64()))?;
                Ok((key, true))
            }
            Err(e) => Err(StoreError::MasterKey(format!(
                "cannot read {}: {e}",
                file.display()
            ))),
        }
    }

    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// Write a file readable by its owner only (0600), creating its directory; refuses to
/// overwrite an existing file.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), StoreError> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| StoreError::Io(path.display().to_string(), e))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::Io(path.display().to_string(), e))
}

/// Encrypt: base64 of nonce (12 bytes) || ciphertext+tag. `aad` binds the value to its row.
pub(crate) fn seal(key: &MasterKey, aad: &str, plain: &[u8]) -> Result<String, StoreError> {
    use aes_gcm::aead::Payload;
    let nonce_bytes: [u8; 12] = rand::random();
    let ct = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce_bytes),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&ct);
    Ok(STANDARD.encode(out))
}

pub(crate) fn open(key: &MasterKey, aad: &str, sealed: &str) -> Result<Vec<u8>, StoreError> {
    use aes_gcm::aead::Payload;
    let raw = STANDARD
        .decode(sealed)
        .map_err(|_| StoreError::Crypto(format!("{aad}: stored value is not base64")))?;
    if raw.len() < 12 + 16 {
        return Err(StoreError::Crypto(format!(
            "{aad}: stored value is truncated"
        )));
    }
    let (nonce, ct) = raw.split_at(12);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| {
            StoreError::Crypto(format!(
                "{aad} cannot be decrypted: the master key is not the one it was encrypted with"
            ))
        })
}

/// A random secret of `n` bytes, URL-safe base64.
pub fn random_token(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new gateway key: `sbx-` and 32 random bytes. Its first 12 characters are its visible prefix.
pub fn new_gateway_key() -> String {
    format!("sbx-{}", random_token(32))
}

/// A new admin token: `sbxa-` and 32 random bytes.
pub fn new_admin_token() -> String {
    format!("sbxa-{}", random_token(32))
}

/// The visible part of a key or token, for lists and logs: 12 characters at most, and never
/// more than a third of it (a value someone chose may be short).
pub fn prefix_of(secret: &str) -> String {
    let n = secret.chars().count();
    secret.chars().take((n / 3).min(12)).collect()
}

/// A masked hint of a credential: its last four characters at most, never more than a quarter.
pub fn hint_of(secret: &str) -> String {
    let n = secret.chars().count();
    let show = (n / 4).min(4);
    let tail: String = secret.chars().skip(n - show).collect();
    format!("****{tail}")
}

pub fn hash_password(password: &str) -> Result<String, StoreError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| StoreError::Crypto(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Crypto(format!("password hash: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    // One string, not one per byte: trace ids are written for every stored trace.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let v: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    v?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_row() {
        let k = MasterKey::generate();
        let s = seal(&k, "credential:a", b"sk-secret").unwrap();
        assert_eq!(open(&k, "credential:a", &s).unwrap(), b"sk-secret");
        assert!(open(&k, "credential:b", &s).is_err());
        assert!(open(&MasterKey::generate(), "credential:a", &s).is_err());
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn master_key_parses_base64_and_hex() {
        let k = MasterKey::generate();
        let b = k.to_base64();
        assert_eq!(MasterKey::parse(&b).unwrap().0, k.0);
        assert_eq!(MasterKey::parse(&hex(&k.0)).unwrap().0, k.0);
        assert!(MasterKey::parse("short").is_err());
    }

    #[test]
    fn hints_never_show_more_than_a_quarter() {
        assert_eq!(hint_of("sk-abcdefghijklmnop"), "****mnop");
        assert_eq!(hint_of("abc"), "****");
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("hunter2").unwrap();
        assert!(verify_password("hunter2", &h));
        assert!(!verify_password("hunter3", &h));
    }
}
