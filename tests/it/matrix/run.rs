//! Running the probes: refused and filtered callers first, on the shared fixtures, each checked
//! for its status, for nothing of A in its answer and for nothing changed; then the allowed
//! callers (reads, then writes on fresh fixtures).

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use linli_server::manifest::{Caller, Probe, ProbeBody};

use super::fixtures::{MARKER, Made, Map, World, multipart, png};

/// One prepared request.
struct Call {
    method: &'static str,
    uri: String,
    content_type: Option<String>,
    body: Vec<u8>,
    /// The request as text (decoded), to tell secrets the caller sent from secrets it got.
    sent: String,
}

struct Answer {
    status: StatusCode,
    location: String,
    body: String,
}

/// What a caller must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Filtered,
    Refused,
}

fn expectation(p: &Probe, c: Caller) -> Expect {
    if p.allow.contains(&c) {
        Expect::Allowed
    } else if p.filtered.contains(&c) {
        Expect::Filtered
    } else {
        Expect::Refused
    }
}

fn placeholders(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j)
                if j > 0
                    && after[..j]
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') =>
            {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// Percent-encode what a URI may not carry (non-ASCII, spaces).
fn encode_uri(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_login_redirect(a: &Answer) -> bool {
    a.status.is_redirection() && a.location.starts_with("/login")
}

fn succeeded(p: &Probe, a: &Answer) -> bool {
    if p.success != 0 {
        return a.status.as_u16() == p.success;
    }
    a.status.is_success() || (a.status.is_redirection() && !is_login_redirect(a))
}

fn refused(p: &Probe, a: &Answer) -> bool {
    matches!(a.status.as_u16(), 401 | 403 | 404)
        || is_login_redirect(a)
        || (p.refusal != 0 && a.status.as_u16() == p.refusal)
}

fn excerpt(s: &str) -> String {
    let s: String = s.chars().take(300).collect();
    s.replace('\n', " ")
}

impl World {
    /// Fill a template: every placeholder by its value for this caller and fixture set.
    async fn fill(
        &mut self,
        t: &str,
        map: &mut Map,
        shared: bool,
        token: &Option<String>,
    ) -> Made<String> {
        let mut out = t.to_string();
        for name in placeholders(t) {
            let v = match name.as_str() {
                "api_key" => token.clone().unwrap_or_default(),
                _ => self.value(map, &name, shared).await?,
            };
            out = out.replacen(&format!("{{{name}}}"), &v, 1);
        }
        Ok(out)
    }

    async fn prepare(
        &mut self,
        p: &Probe,
        c: Caller,
        map: &mut Map,
        shared: bool,
        token: &Option<String>,
    ) -> Made<Call> {
        let path = self.fill(p.path, map, shared, token).await?;
        let csrf = self.session(c).map(|s| s.csrf.clone()).unwrap_or_default();
        let web_form = !p.path.starts_with("/open311/");
        let (content_type, body, sent_body): (Option<String>, Vec<u8>, String) = match p.body {
            ProbeBody::None => {
                if p.method == "POST" && !p.path.starts_with("/api/") && web_form {
                    let b = crate::common::form(&[("_csrf", &csrf)]);
                    (
                        Some("application/x-www-form-urlencoded".into()),
                        b,
                        String::new(),
                    )
                } else {
                    (None, Vec::new(), String::new())
                }
            }
            ProbeBody::Json(t) => {
                let b = self.fill(t, map, shared, token).await?;
                (Some("application/json".into()), b.clone().into_bytes(), b)
            }
            ProbeBody::Form(fields) => {
                let mut filled: Vec<(String, String)> = Vec::new();
                for (k, v) in fields {
                    filled.push((k.to_string(), self.fill(v, map, shared, token).await?));
                }
                if web_form {
                    filled.push(("_csrf".into(), csrf.clone()));
                }
                let refs: Vec<(&str, &str)> = filled
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let sent = filled
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&");
                (
                    Some("application/x-www-form-urlencoded".into()),
                    crate::common::form(&refs),
                    sent,
                )
            }
            ProbeBody::Multipart(fields) => {
                let mut filled: Vec<(String, Vec<u8>)> = Vec::new();
                let mut sent = String::new();
                for (k, v) in fields {
                    let bytes = match *v {
                        "{csv}" => self.csv(map, shared).await?,
                        "{png}" => png(),
                        _ => self.fill(v, map, shared, token).await?.into_bytes(),
                    };
                    sent.push_str(&String::from_utf8_lossy(&bytes));
                    sent.push('&');
                    filled.push((k.to_string(), bytes));
                }
                filled.push(("_csrf".into(), csrf.clone().into_bytes()));
                let refs: Vec<(&str, &[u8])> = filled
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                let (ct, body) = multipart(&refs);
                (Some(ct), body, sent)
            }
            ProbeBody::Raw(ct, t) => {
                let bytes = match t {
                    "{csv}" => self.csv(map, shared).await?,
                    "{png}" => png(),
                    _ => self.fill(t, map, shared, token).await?.into_bytes(),
                };
                let sent = String::from_utf8_lossy(&bytes).to_string();
                (Some(ct.to_string()), bytes, sent)
            }
        };
        Ok(Call {
            method: p.method,
            uri: encode_uri(&path),
            content_type,
            body,
            sent: format!("{path} {sent_body}"),
        })
    }

    async fn send(&self, call: &Call, c: Caller, token: &Option<String>, stream: bool) -> Answer {
        let mut b = Request::builder().method(call.method).uri(&call.uri);
        if let Some(s) = self.session(c) {
            b = b
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf);
        }
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = &call.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let resp = self
            .app
            .router
            .clone()
            .oneshot(b.body(Body::from(call.body.clone())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = if stream {
            String::new()
        } else {
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&bytes).to_string()
        };
        Answer {
            status,
            location,
            body,
        }
    }

    /// The secrets of A in an answer, apart from those the request carried itself.
    fn leaks(&self, call: &Call, a: &Answer) -> Vec<String> {
        let mut found: Vec<String> = self
            .secrets
            .iter()
            .filter(|s| !call.sent.contains(s.as_str()))
            .filter(|s| a.body.contains(s.as_str()) || a.location.contains(s.as_str()))
            .cloned()
            .collect();
        if !call.sent.contains(MARKER) && a.body.contains(MARKER) {
            let at = a.body.find(MARKER).unwrap();
            let start = a.body[..at]
                .char_indices()
                .rev()
                .nth(40)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let context: String = a.body[start..].chars().take(80).collect();
            found.push(format!("{MARKER} in “{context}”"));
        }
        found
    }
}

fn is_write(p: &Probe) -> bool {
    !matches!(p.method, "GET" | "OPTIONS")
}

/// Who runs a probe: the standard callers, and extra callers it names.
fn callers(p: &Probe) -> Vec<Caller> {
    Caller::ALL
        .iter()
        .copied()
        .filter(|c| Caller::STANDARD.contains(c) || p.allow.contains(c) || p.filtered.contains(c))
        .collect()
}

pub async fn run() {
    let started = Instant::now();
    let mut w = World::new().await;
    let setup = started.elapsed();
    let probes = super::all_probes();
    let mut failures: Vec<String> = Vec::new();
    let mut runs = 0usize;
    let mut last: Option<Vec<(String, i64)>> = None;
    let mut last_writes: Option<i64> = None;
    let mut snap_time = std::time::Duration::ZERO;
    let mut send_time = std::time::Duration::ZERO;

    // Refused and filtered callers, on the shared fixtures.
    for (module, p) in &probes {
        for c in callers(p) {
            let expect = expectation(p, c);
            if expect == Expect::Allowed {
                continue;
            }
            let token = if c.is_token() {
                w.token(c, p.actions).await
            } else {
                None
            };
            let what = format!("[{module}] {} {} as {c:?}", p.method, p.path);
            let mut shared = std::mem::take(&mut w.shared);
            let call = w.prepare(p, c, &mut shared, true, &token).await;
            w.shared = shared;
            let call = match call {
                Ok(call) => call,
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let t0 = Instant::now();
            // The row counts before: the last ones, unless something was written since.
            let writes0 = w.writes().await;
            if w.dirty || last.is_none() || (writes0.is_some() && writes0 != last_writes) {
                last = Some(w.snapshot().await);
            }
            let before = last.clone().unwrap();
            let t1 = Instant::now();
            let a = w.send(&call, c, &token, p.stream).await;
            let t2 = Instant::now();
            let writes1 = w.writes().await;
            let after = if writes1.is_some() && writes1 == writes0 {
                before.clone()
            } else {
                w.snapshot().await
            };
            last_writes = writes1;
            snap_time += (t1 - t0) + t2.elapsed();
            send_time += t2 - t1;
            w.dirty = false;
            runs += 1;
            let status_ok = match expect {
                Expect::Filtered => succeeded(p, &a),
                _ => refused(p, &a),
            };
            if !status_ok {
                failures.push(format!(
                    "{what}: expected {}, got {} {} {}",
                    if expect == Expect::Filtered {
                        "an answer"
                    } else {
                        "a refusal"
                    },
                    a.status.as_u16(),
                    a.location,
                    excerpt(&a.body)
                ));
            }
            let leaks = w.leaks(&call, &a);
            if !leaks.is_empty() {
                failures.push(format!("{what}: the answer holds A's {leaks:?}"));
            }
            if before != after {
                let changed: Vec<String> = before
                    .iter()
                    .zip(after.iter())
                    .filter(|(b, a)| b != a)
                    .map(|(b, a)| format!("{} {}→{}", b.0, b.1, a.1))
                    .collect();
                failures.push(format!("{what}: changed {changed:?} ({})", a.status));
            }
            last = Some(after);
        }
    }
    let refusals = started.elapsed();

    // Allowed callers: reads on the shared fixtures, then writes on fresh ones.
    let mut ordered: Vec<&(&str, &Probe)> = probes.iter().filter(|(_, p)| !is_write(p)).collect();
    ordered.extend(probes.iter().filter(|(_, p)| is_write(p)));
    for (module, p) in ordered {
        for c in callers(p) {
            if expectation(p, c) != Expect::Allowed {
                continue;
            }
            let token = if c.is_token() {
                w.token(c, p.actions).await
            } else {
                None
            };
            let call = if is_write(p) {
                let mut fresh = Map::new();
                w.prepare(p, c, &mut fresh, false, &token).await
            } else {
                let mut shared = std::mem::take(&mut w.shared);
                let call = w.prepare(p, c, &mut shared, true, &token).await;
                w.shared = shared;
                call
            };
            let call = match call {
                Ok(call) => call,
                Err(e) => {
                    failures.push(format!(
                        "[{module}] {} {} as {c:?} (allowed): {e}",
                        p.method, p.path
                    ));
                    continue;
                }
            };
            let a = w.send(&call, c, &token, p.stream).await;
            w.dirty = true;
            runs += 1;
            if !succeeded(p, &a) {
                failures.push(format!(
                    "[{module}] {} {} as {c:?} (allowed): got {} {} {}",
                    p.method,
                    p.path,
                    a.status.as_u16(),
                    a.location,
                    excerpt(&a.body)
                ));
            }
            if is_write(p) {
                w.relogin_if_needed(c).await;
            }
        }
    }
    eprintln!(
        "authorization matrix ({}): {} probes, {runs} calls; setup {:.1?}, refused and filtered callers {:.1?} (requests {send_time:.1?}, counting rows {snap_time:.1?}), allowed callers {:.1?}",
        if w.app.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        probes.len(),
        setup,
        refusals - setup,
        started.elapsed() - refusals,
    );
    let n = failures.len();
    assert!(
        failures.is_empty(),
        "{n} authorization matrix failures:\n{}",
        failures.join("\n")
    );
    w.app.close().await;
}
