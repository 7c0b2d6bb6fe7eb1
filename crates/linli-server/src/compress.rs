//! gzip for text responses (pages, JSON, CSS, JavaScript, SVG): a resident on a slow mobile
//! network gets a page in about a quarter of the bytes. Only whole bodies of known, bounded size
//! are compressed — live streams (`text/event-stream`) and streamed exports pass untouched, so
//! nothing here buffers an unbounded body or delays an event.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use std::io::Write;

/// Below this a gzip header and the lost round of tuning cost more than they save.
const MIN_BYTES: u64 = 1024;
/// Above this the body is a download (exports); it is left as it is.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

pub async fn gzip_text(req: Request, next: Next) -> Response {
    let accepts = accepts_gzip(req.headers());
    let resp = next.run(req).await;
    if !accepts || !worth_compressing(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // The size hint is exact for every body worth compressing (checked above), so this cannot
    // cut a body short.
    let bytes = match axum::body::to_bytes(body, MAX_BYTES as usize).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::fast(),
    );
    let gz = match enc.write_all(&bytes).and_then(|_| enc.finish()) {
        Ok(gz) => gz,
        Err(_) => return Response::from_parts(parts, Body::from(bytes)),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    Response::from_parts(parts, Body::from(gz))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut it = coding.split(';');
            let name = it.next().unwrap_or("").trim();
            // "gzip;q=0" means "not gzip".
            let refused = it.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn worth_compressing(resp: &Response) -> bool {
    if resp.headers().contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    let textual = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct.to_ascii_lowercase();
            (ct.starts_with("text/") && !ct.starts_with("text/event-stream"))
                || ct.starts_with("application/json")
                || ct.starts_with("application/javascript")
                || ct.starts_with("application/manifest+json")
                || ct.starts_with("application/xml")
                || ct.starts_with("image/svg+xml")
        })
        .unwrap_or(false);
    let hint = resp.body().size_hint();
    textual && hint.upper() == Some(hint.lower()) && (MIN_BYTES..=MAX_BYTES).contains(&hint.lower())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_as_a_list_with_weights() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, gzip;q=0.8"));
        assert!(h("*"));
        assert!(!h("gzip;q=0"));
        assert!(!h("identity"));
        assert!(!h("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
