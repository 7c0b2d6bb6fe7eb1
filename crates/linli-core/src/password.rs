//! Password hashing with argon2id (PHC string format).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Minimum length of a new password, in characters.
pub const MIN_LEN: usize = 8;

fn hasher() -> Argon2<'static> {
    // OWASP's second recommended setting: m=19 MiB, t=2, p=1.
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid params"),
    )
}

pub fn hash(password: &str) -> String {
    hasher()
        .hash_password(password.as_bytes())
        .expect("argon2 hashing")
        .to_string()
}

pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let h = super::hash("linli-demo");
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("linli-demo", &h));
        assert!(!super::verify("linli-dem0", &h));
        assert!(!super::verify("x", "not a hash"));
    }
}
