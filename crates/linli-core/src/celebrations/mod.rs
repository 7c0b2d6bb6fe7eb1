//! 家有喜事 (celebrations): a household shares a wedding, a birth, a long life … and neighbours
//! of the same community congratulate. The rules here are pure; the store keeps the posts.
//!
//! This module is also the small example `docs/adding-a-module.md` walks through.

use crate::auth::Action;
use crate::{AppError, AppResult};

/// Hide a celebration from the community (committee staff moderating their community's posts).
pub const CELEBRATION_MODERATE: Action = Action::new("celebration_moderate");

/// What can be celebrated.
pub const KINDS: [&str; 5] = ["wedding", "birth", "longevity", "graduation", "other"];

pub const MAX_TITLE: usize = 40;
pub const MAX_MESSAGE: usize = 500;

/// A celebration as a household shares it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub kind: &'static str,
    pub title: String,
    pub message: String,
}

/// Check what a household wants to share: a known kind, a title of 1–40 characters, a message
/// of at most 500 (both trimmed).
pub fn post(kind: &str, title: &str, message: &str) -> AppResult<Post> {
    let kind = KINDS
        .iter()
        .find(|k| **k == kind)
        .ok_or_else(|| AppError::bad_request("validation.bad_value").arg("field", "kind"))?;
    let title = title.trim();
    if title.is_empty() {
        return Err(AppError::required("title"));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(AppError::bad_request("validation.too_long").arg("field", "title"));
    }
    let message = message.trim();
    if message.chars().count() > MAX_MESSAGE {
        return Err(AppError::bad_request("validation.too_long").arg("field", "message"));
    }
    Ok(Post {
        kind,
        title: title.to_string(),
        message: message.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_needs_a_known_kind_and_a_short_title() {
        let p = post("birth", "  添丁之喜 ", "母子平安").unwrap();
        assert_eq!((p.kind, p.title.as_str()), ("birth", "添丁之喜"));
        assert_eq!(
            post("party", "x", "").unwrap_err().code,
            "validation.bad_value"
        );
        assert_eq!(
            post("birth", "  ", "").unwrap_err().code,
            "validation.required"
        );
        assert_eq!(
            post("birth", &"喜".repeat(41), "").unwrap_err().code,
            "validation.too_long"
        );
        assert!(post("birth", &"喜".repeat(40), &"贺".repeat(500)).is_ok());
        assert!(post("birth", "喜", &"贺".repeat(501)).is_err());
    }
}
