//! Gates and visitor passes: the signed pass token, licence plates, temperatures. Pure rules,
//! no I/O; the token parser reads untrusted input from gate scanners and must never panic.
//!
//! A pass token is `base64url(version ‖ pass id (16 bytes) ‖ valid-until ms (8 bytes, big
//! endian) ‖ HMAC-SHA256 truncated to 16 bytes)` — 41 bytes, 55 characters, small enough for a
//! low-density QR code that cheap gate scanners read. The MAC key is derived from the master key
//! (`FieldCipher::signing_key("visitor-pass/v1")`), so a token cannot be made or altered without
//! it, and nothing secret is stored with the pass.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The purpose label of the pass signing key.
pub const PASS_KEY_PURPOSE: &str = "visitor-pass/v1";
const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const TOKEN_BYTES: usize = 1 + 16 + 8 + MAC_LEN;
/// The length of an encoded token.
pub const TOKEN_CHARS: usize = 55;

/// The signed content of a pass token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassClaim {
    pub pass_id: uuid::Uuid,
    pub valid_until: i64,
}

/// Why a token was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token at all (wrong length, alphabet or version).
    Malformed,
    /// Well-formed, but the MAC does not match: made or altered without the key.
    Forged,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Forged => "forged",
        }
    }
}

fn mac(key: &[u8; 32], body: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(body);
    m
}

/// Sign a claim.
pub fn encode_pass(key: &[u8; 32], claim: &PassClaim) -> String {
    let mut buf = Vec::with_capacity(TOKEN_BYTES);
    buf.push(VERSION);
    buf.extend_from_slice(claim.pass_id.as_bytes());
    buf.extend_from_slice(&claim.valid_until.to_be_bytes());
    let tag = mac(key, &buf).finalize().into_bytes();
    buf.extend_from_slice(&tag[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Parse and check a token read by a scanner. Surrounding whitespace is ignored; anything else
/// that is not exactly a token of ours is `Malformed`; a bad MAC is `Forged` (checked in
/// constant time).
pub fn decode_pass(key: &[u8; 32], token: &str) -> Result<PassClaim, TokenError> {
    let t = token.trim();
    if t.len() != TOKEN_CHARS {
        return Err(TokenError::Malformed);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(t.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    if raw.len() != TOKEN_BYTES || raw[0] != VERSION {
        return Err(TokenError::Malformed);
    }
    let (body, tag) = raw.split_at(TOKEN_BYTES - MAC_LEN);
    mac(key, body)
        .verify_truncated_left(tag)
        .map_err(|_| TokenError::Forged)?;
    let id: [u8; 16] = body[1..17].try_into().map_err(|_| TokenError::Malformed)?;
    let until: [u8; 8] = body[17..25].try_into().map_err(|_| TokenError::Malformed)?;
    Ok(PassClaim {
        pass_id: uuid::Uuid::from_bytes(id),
        valid_until: i64::from_be_bytes(until),
    })
}

/// Province abbreviations that begin a mainland plate.
const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领";

/// Normalize (upper case, no spaces, dots or dashes) and validate a mainland licence plate:
/// a province character, a letter, then 5 letters/digits (6 for new-energy plates), the last
/// of which may be 挂 / 学 / 警 / 领.
pub fn parse_plate(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '·' | '.' | '-' | '•'))
        .flat_map(char::to_uppercase)
        .collect();
    let chars: Vec<char> = s.chars().collect();
    if !(7..=8).contains(&chars.len()) || !PROVINCES.contains(chars[0]) {
        return None;
    }
    if !chars[1].is_ascii_uppercase() {
        return None;
    }
    let last = chars.len() - 1;
    for (i, c) in chars.iter().enumerate().skip(2) {
        let ok =
            c.is_ascii_uppercase() || c.is_ascii_digit() || (i == last && "挂学警领".contains(*c));
        if !ok {
            return None;
        }
    }
    Some(s)
}

/// The default fever threshold: 37.3 °C, in tenths.
pub const DEFAULT_FEVER_X10: i64 = 373;

/// A plausible body temperature reading in tenths of a degree (30.0–45.0 °C).
pub fn valid_temperature_x10(t: i64) -> bool {
    (300..=450).contains(&t)
}

/// `37.3` from 373.
pub fn format_x10(t: i64) -> String {
    format!("{}.{}", t / 10, (t % 10).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [5u8; 32];

    fn claim() -> PassClaim {
        PassClaim {
            pass_id: uuid::Uuid::now_v7(),
            valid_until: 1_800_000_000_000,
        }
    }

    #[test]
    fn round_trip_and_length() {
        let c = claim();
        let t = encode_pass(&KEY, &c);
        assert_eq!(t.len(), TOKEN_CHARS);
        assert_eq!(decode_pass(&KEY, &t), Ok(c.clone()));
        assert_eq!(decode_pass(&KEY, &format!("  {t}\n")), Ok(c));
    }

    #[test]
    fn other_key_is_forged() {
        let t = encode_pass(&KEY, &claim());
        assert_eq!(decode_pass(&[6u8; 32], &t), Err(TokenError::Forged));
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let c = claim();
        let raw = URL_SAFE_NO_PAD.decode(encode_pass(&KEY, &c)).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut m = raw.clone();
                m[i] ^= 1 << bit;
                let t = URL_SAFE_NO_PAD.encode(&m);
                let r = decode_pass(&KEY, &t);
                assert!(r.is_err(), "byte {i} bit {bit} accepted");
                if i > 0 {
                    assert_eq!(r, Err(TokenError::Forged));
                }
            }
        }
    }

    #[test]
    fn extending_the_expiry_is_forged() {
        let c = claim();
        let mut raw = URL_SAFE_NO_PAD.decode(encode_pass(&KEY, &c)).unwrap();
        raw[17..25].copy_from_slice(&(c.valid_until + 86_400_000).to_be_bytes());
        assert_eq!(
            decode_pass(&KEY, &URL_SAFE_NO_PAD.encode(&raw)),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random walk over lengths and alphabets, including multi-byte
        // characters at every position (a scanner may send anything).
        let alphabet: Vec<char> = "ABCxyz019-_+/=. 京\u{0}\u{10FFFF}é".chars().collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 70) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i) % alphabet.len()])
                .collect();
            let _ = decode_pass(&KEY, &s);
        }
        assert_eq!(decode_pass(&KEY, ""), Err(TokenError::Malformed));
        assert_eq!(
            decode_pass(&KEY, &"京".repeat(55)),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            decode_pass(&KEY, &"A".repeat(55)),
            Err(TokenError::Malformed)
        );
        // Right length, wrong version byte.
        let mut raw = URL_SAFE_NO_PAD.decode(encode_pass(&KEY, &claim())).unwrap();
        raw[0] = 2;
        assert_eq!(
            decode_pass(&KEY, &URL_SAFE_NO_PAD.encode(&raw)),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn plates() {
        assert_eq!(parse_plate("京a·12345").as_deref(), Some("京A12345"));
        assert_eq!(parse_plate("粤B D12345").as_deref(), Some("粤BD12345"));
        assert_eq!(parse_plate("苏E1234学").as_deref(), Some("苏E1234学"));
        assert_eq!(parse_plate("XA12345"), None);
        assert_eq!(parse_plate("京112345"), None);
        assert_eq!(parse_plate("京A1234"), None);
        assert_eq!(parse_plate("京A12学45"), None);
        assert_eq!(parse_plate(""), None);
    }

    #[test]
    fn temperatures() {
        assert!(valid_temperature_x10(365));
        assert!(!valid_temperature_x10(12));
        assert!(!valid_temperature_x10(900));
        assert_eq!(format_x10(373), "37.3");
    }
}
