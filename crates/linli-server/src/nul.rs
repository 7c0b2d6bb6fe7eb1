//! NUL characters are refused before any handler runs. PostgreSQL cannot store U+0000 in text
//! (the statement fails: a 500) while SQLite stores it, so the same request answered differently
//! on the two databases; no field of Linli has a use for it. Checked: the URL (`%00` in a path or
//! query) and JSON or form bodies (`\u0000`, `%00`, a raw zero byte). Uploads (spreadsheets,
//! photos) go through their own parsers.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use linli_core::{AppError, ErrorKind};

use crate::error::ApiError;

/// axum's default body limit: JSON and form bodies are never larger.
const TEXT_BODY_LIMIT: usize = 2 * 1024 * 1024;

pub async fn refuse_nul(req: Request, next: Next) -> Response {
    // Path and query as received (no allocation on every request).
    let uri = req.uri();
    // Open311 clients get errors in the spec's shape.
    let open311 = uri
        .path()
        .starts_with("/open311/")
        .then(|| uri.path().to_string());
    if uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00")) {
        return refused(open311.as_deref(), AppError::bad_request("validation.nul"));
    }
    let kind = body_kind(&req);
    if kind == BodyKind::Other {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, TEXT_BODY_LIMIT).await else {
        return refused(
            open311.as_deref(),
            AppError::new(ErrorKind::PayloadTooLarge, "payload_too_large").arg("limit", "2 MB"),
        );
    };
    let nul = bytes.contains(&0)
        || match kind {
            BodyKind::Json => json_has_nul_escape(&bytes),
            BodyKind::Form => bytes.windows(3).any(|w| w == b"%00"),
            BodyKind::Other => false,
        };
    if nul {
        return refused(open311.as_deref(), AppError::bad_request("validation.nul"));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[derive(PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Other,
}

fn body_kind(req: &Request) -> BodyKind {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Other
    }
}

/// Whether JSON text holds the escape `\u0000` (and not an escaped backslash followed by the
/// text `u0000`): the backslashes right before `u0000` must be odd in number.
fn json_has_nul_escape(b: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = b[i..].windows(5).position(|w| w == b"u0000") {
        let u = i + at;
        let slashes = b[..u].iter().rev().take_while(|c| **c == b'\\').count();
        if slashes % 2 == 1 {
            return true;
        }
        i = u + 1;
    }
    false
}

fn refused(open311_path: Option<&str>, e: AppError) -> Response {
    match open311_path {
        Some(path) => crate::open311::error_response(path, e),
        None => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::json_has_nul_escape;

    #[test]
    fn only_real_nul_escapes_count() {
        assert!(json_has_nul_escape(br#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul_escape(br#"{"a":"\\\u0000"}"#));
        assert!(!json_has_nul_escape(br#"{"a":"C:\\u0000"}"#));
        assert!(!json_has_nul_escape(br#"{"a":"u0000 \u0041"}"#));
        assert!(!json_has_nul_escape(b""));
    }
}
