//! Field encryption (AES-256-GCM) and blind indexes (HMAC-SHA256) for ID and phone numbers.
//!
//! Ciphertexts are `v1:` + base64(nonce ‖ ciphertext‖tag). The blind index is keyed separately,
//! so a database dump alone allows neither decryption nor a dictionary attack on the index.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as HmacKeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes (64 hex characters)")]
    BadKey,
    #[error("a stored ciphertext could not be decrypted (wrong key or tampered data)")]
    Decrypt,
}

/// Keys derived from one 32-byte master key.
#[derive(Clone)]
pub struct FieldCipher {
    aead: Aes256Gcm,
    index_key: [u8; 32],
    /// Root for purpose-bound signing keys (visitor passes …), see [`FieldCipher::signing_key`].
    signing_root: [u8; 32],
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldCipher(..)")
    }
}

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as HmacKeyInit>::new_from_slice(master).expect("hmac accepts any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl FieldCipher {
    pub fn new(master: &[u8; 32]) -> Self {
        let enc = derive(master, "linli/field-encryption/v1");
        FieldCipher {
            aead: Aes256Gcm::new_from_slice(&enc).expect("32-byte key"),
            index_key: derive(master, "linli/blind-index/v1"),
            signing_root: derive(master, "linli/signing/v1"),
        }
    }

    /// Parse a master key written as 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self::new(&key))
    }

    /// A fresh random master key as hex, for first start.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(
                &Nonce::try_from(&nonce[..]).expect("12-byte nonce"),
                plaintext.as_bytes(),
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("v1:{}", STANDARD.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let raw = stored
            .strip_prefix("v1:")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or(CryptoError::Decrypt)?;
        let pt = self
            .aead
            .decrypt(
                &Nonce::try_from(&raw[..12]).map_err(|_| CryptoError::Decrypt)?,
                &raw[12..],
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Decrypt)
    }

    /// A 32-byte HMAC key for one purpose (e.g. `visitor-pass/v1`), derived from the master key,
    /// so signed tokens can be checked without storing them and never share a key with the
    /// encryption or the blind index.
    pub fn signing_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as HmacKeyInit>::new_from_slice(&self.signing_root)
            .expect("any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Deterministic keyed index for exact lookup; `kind` separates ID and phone namespaces.
    pub fn blind_index(&self, kind: &str, normalized: &str) -> String {
        let mut mac =
            <HmacSha256 as HmacKeyInit>::new_from_slice(&self.index_key).expect("any key length");
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(normalized.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// SHA-256 as lowercase hex (session and API-token hashes, audit chain).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A random URL-safe secret of `n` bytes (sessions, API tokens, CSRF).
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> FieldCipher {
        FieldCipher::new(&[7u8; 32])
    }

    #[test]
    fn round_trip_and_random_nonce() {
        let c = cipher();
        let a = c.encrypt("11010519491231002X");
        let b = c.encrypt("11010519491231002X");
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(c.decrypt(&a).unwrap(), "11010519491231002X");
    }

    #[test]
    fn tampering_and_wrong_key_fail() {
        let c = cipher();
        let mut s = c.encrypt("13812345678");
        let last = s.pop().unwrap();
        s.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(c.decrypt(&s), Err(CryptoError::Decrypt));
        let other = FieldCipher::new(&[8u8; 32]);
        assert_eq!(other.decrypt(&c.encrypt("x")), Err(CryptoError::Decrypt));
    }

    #[test]
    fn blind_index_is_deterministic_and_keyed() {
        let c = cipher();
        assert_eq!(c.blind_index("id", "1"), c.blind_index("id", "1"));
        assert_ne!(c.blind_index("id", "1"), c.blind_index("phone", "1"));
        assert_ne!(
            c.blind_index("id", "1"),
            FieldCipher::new(&[9u8; 32]).blind_index("id", "1")
        );
    }

    #[test]
    fn hex_keys() {
        assert!(FieldCipher::from_hex(&FieldCipher::generate_hex()).is_ok());
        assert_eq!(
            FieldCipher::from_hex("abcd").unwrap_err(),
            CryptoError::BadKey
        );
    }
}
