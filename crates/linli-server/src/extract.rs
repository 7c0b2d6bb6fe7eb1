//! Extractors: the authenticated caller, and JSON/query bodies whose rejections become
//! localized API errors instead of axum's plain-text ones.

use std::net::SocketAddr;

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::de::DeserializeOwned;

use linli_core::AppError;
use linli_core::auth::Principal;

use crate::AppState;
use crate::auth_cache::session_key;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "linli_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The signed-in user (session cookie) or integration (bearer token).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// How the caller authenticated (sessions need CSRF protection on writes, tokens do not).
#[derive(Debug, Clone)]
pub enum Via {
    Session { token: String, csrf: String },
    Token,
}

pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn client_ip(parts: &Parts, trusted: &[IpBlock]) -> String {
    let Some(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return "local".into();
    };
    let hops: Vec<&axum::http::HeaderValue> =
        parts.headers.get_all("x-forwarded-for").iter().collect();
    forwarded_client(peer, hops.into_iter(), trusted).to_string()
}

/// The client behind trusted proxies: when the connection comes from a trusted proxy, walk
/// `X-Forwarded-For` from the right (the nearest hop first) past every trusted address; the
/// first other address is the client. A header from an untrusted peer is ignored (anyone can
/// write one), and so is a malformed hop (the last trusted address counts then).
pub fn forwarded_client<'a>(
    peer: IpAddr,
    headers: impl DoubleEndedIterator<Item = &'a axum::http::HeaderValue>,
    trusted: &[IpBlock],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|b| b.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for h in headers.rev() {
        let Ok(v) = h.to_str() else { return client };
        for hop in v.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
    }
    client
}

/// An address or CIDR block of trusted proxies (`10.0.0.5`, `10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    net: IpAddr,
    bits: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(*a) & mask
            }
            // An IPv4 client seen over IPv6 (`::ffff:a.b.c.d`).
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(&IpAddr::V4(v4))),
            _ => false,
        }
    }
}

impl std::str::FromStr for IpBlock {
    type Err = String;
    fn from_str(s: &str) -> Result<IpBlock, String> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("not an address or CIDR block: {s:?}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("bad prefix length in {s:?}"))?,
        };
        Ok(IpBlock { net, bits })
    }
}

/// Resolve the caller, if any.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<(Principal, Via)>, ApiError> {
    use crate::auth_cache::token_key;
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let v = h.to_str().unwrap_or("");
        let invalid = || AppError::new(linli_core::ErrorKind::Unauthorized, "auth.token_invalid");
        let Some(secret) = v.strip_prefix("Bearer ").map(str::trim) else {
            return Err(invalid().into());
        };
        if let Some((p, _)) = state.auth_cache.get(&token_key(secret)) {
            return Ok(Some((p, Via::Token)));
        }
        return match state.store.token_principal(secret).await? {
            Some(p) => {
                state.auth_cache.put(&token_key(secret), &p, None);
                Ok(Some((p, Via::Token)))
            }
            None => Err(invalid().into()),
        };
    }
    if let Some(token) = cookie(parts, SESSION_COOKIE)
        && let Some((p, csrf)) = session_principal(state, token).await?
    {
        return Ok(Some((
            p,
            Via::Session {
                token: token.to_string(),
                csrf,
            },
        )));
    }
    Ok(None)
}

/// The principal and CSRF token of a signed-in session (cached for a few seconds); `None` once
/// the session has ended (sign-out, password change, expiry).
pub(crate) async fn session_principal(
    state: &AppState,
    token: &str,
) -> Result<Option<(Principal, String)>, AppError> {
    if let Some((p, Some(csrf))) = state.auth_cache.get(&session_key(token)) {
        return Ok(Some((p, csrf)));
    }
    let found = state.store.session(token).await?;
    if let Some((p, csrf)) = &found {
        state
            .auth_cache
            .put(&session_key(token), p, Some(csrf.clone()));
    }
    Ok(found)
}

impl<S> FromRequestParts<S> for Auth
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let Some((principal, via)) = authenticate(parts, &state).await? else {
            return Err(AppError::new(linli_core::ErrorKind::Unauthorized, "unauthorized").into());
        };
        // Cookie-authenticated writes must prove they come from our own pages or scripts.
        if let Via::Session { csrf, .. } = &via
            && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(csrf.as_str()) {
                return Err(AppError::forbidden()
                    .details(serde_json::json!({ "reason": "auth.csrf" }))
                    .into());
            }
        }
        parts.extensions.insert(via);
        Ok(Auth(principal))
    }
}

/// A signed-in person (session cookie), never an integration token. The caller's own inbox,
/// notification channels, follows and tokens belong to the person: a token made for one action
/// in one area must not read its creator's notices, send them to another address or manage the
/// creator's tokens (these endpoints check no action a token could be limited by).
#[derive(Debug, Clone)]
pub struct Person(pub Principal);

impl<S> FromRequestParts<S> for Person
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Auth(principal) = Auth::from_request_parts(parts, state).await?;
        if principal.token().is_some() {
            return Err(
                AppError::new(linli_core::ErrorKind::Forbidden, "auth.token_not_allowed").into(),
            );
        }
        Ok(Person(principal))
    }
}

/// JSON body with localized rejection.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    AppError::bad_request("bad_request")
        .arg("detail", r.body_text())
        .into()
}

/// Query string with localized rejection.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    AppError::bad_request("bad_request")
        .arg("detail", r.body_text())
        .into()
}

/// A raw upload, with the size limit turned into a localized 413.
pub fn body_rejection(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(linli_core::ErrorKind::PayloadTooLarge, "payload_too_large")
            .arg("limit", format!("{} MB", limit / 1_048_576))
            .into()
    } else {
        AppError::bad_request("bad_request")
            .arg("detail", r.body_text())
            .into()
    }
}

/// Most fields a form body may carry where a handler takes it as a list of pairs.
pub const MAX_FORM_FIELDS: usize = 1000;

/// A `application/x-www-form-urlencoded` body as `(name, value)` pairs, for forms whose fields
/// repeat (labels) or vary. The fields are counted before any is decoded: the body is at most
/// 2 MB (axum's default limit, and the NUL check's), but `&&&…` of that size would otherwise
/// become a million pairs of strings.
pub struct FormPairs(pub Vec<(String, String)>);

impl FormPairs {
    /// The first value of field `name`, or "" when the form has none.
    pub fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    /// Every value of a repeated field (ticked boxes), in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// Whether the form has the field at all (a ticked box).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

impl<S> FromRequest<S> for FormPairs
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| body_rejection(r, 2 * 1024 * 1024))?;
        let fields = bytes.iter().filter(|b| **b == b'&').count() + 1;
        if fields > MAX_FORM_FIELDS {
            return Err(AppError::bad_request("validation.too_many_fields")
                .arg("max", MAX_FORM_FIELDS.to_string())
                .into());
        }
        Ok(FormPairs(
            form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// Read a multipart field to its end keeping at most `max` bytes of it: `Ok(None)` when it
/// was longer (the rest is read and dropped, so the fields after it still arrive).
pub async fn field_bytes(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
) -> Result<Option<Vec<u8>>, axum::extract::multipart::MultipartError> {
    let mut out = Vec::new();
    let mut over = false;
    while let Some(chunk) = field.chunk().await? {
        if over || out.len() + chunk.len() > max {
            over = true;
            out = Vec::new();
        } else {
            out.extend_from_slice(&chunk);
        }
    }
    Ok((!over).then_some(out))
}

/// A multipart text field of at most `max` bytes (invalid UTF-8 replaced); `Ok(None)` when
/// it was longer.
pub async fn field_text(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
) -> Result<Option<String>, axum::extract::multipart::MultipartError> {
    Ok(field_bytes(field, max)
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_behind_trusted_proxies() {
        let trusted: Vec<IpBlock> =
            vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let h = [HeaderValue::from_static("203.0.113.7, 10.1.2.3")];
        // Through HAProxy (10.1.2.3 forwarded by 127.0.0.1): the client is the first untrusted hop.
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), h.iter(), &trusted),
            ip("203.0.113.7")
        );
        // From an untrusted peer, the header is the caller's own words.
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), h.iter(), &trusted),
            ip("198.51.100.1")
        );
        // A spoofed left part does not help: the right-most untrusted hop counts.
        let spoof = [HeaderValue::from_static("1.1.1.1, 203.0.113.9")];
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), spoof.iter(), &trusted),
            ip("203.0.113.9")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), [].iter(), &trusted),
            ip("127.0.0.1")
        );
        let bad = [HeaderValue::from_static("nonsense")];
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), bad.iter(), &trusted),
            ip("127.0.0.1")
        );
        // Nothing trusted: the peer.
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), h.iter(), &[]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn blocks() {
        let b: IpBlock = "192.168.0.0/16".parse().unwrap();
        assert!(b.contains(&ip("192.168.4.5")));
        assert!(!b.contains(&ip("192.169.0.1")));
        assert!(b.contains(&ip("::ffff:192.168.1.1")));
        let all: IpBlock = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&ip("8.8.8.8")));
        let v6: IpBlock = "fd00::/8".parse().unwrap();
        assert!(v6.contains(&ip("fd12::1")));
        assert!("10.0.0.0/33".parse::<IpBlock>().is_err());
        assert!("host".parse::<IpBlock>().is_err());
    }
}
