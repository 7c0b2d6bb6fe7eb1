//! Every page a demo account can reach, checked as a browser would parse it: each demo login of
//! the README signs in, starts at `/`, and follows the site's own links (navigation, home tiles,
//! links in the pages) a few steps deep — one or two pages of each shape (`/staff/reports/{id}`
//! once or twice, not for every report). Each page must answer 200, have a clean `<head>` (no
//! form, input or link in it or in `<title>`), exactly one `<h1>` and it inside `<main>`, a label
//! (`<label for>`, `aria-label` or `aria-labelledby`) for every visible form field, and — the
//! Chinese pages — no English words in the text a reader sees beyond product names, units and
//! codes. Every finding of every page is listed at the end, not only the first.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use axum::http::Method;
use serde_json::json;

use linli_server::modules::ALL;

use crate::common::{Doc, ElementRef, TestApp, submit};

/// The demo logins of the README's table.
const LOGINS: &[&str] = &[
    "admin",
    "district",
    "street",
    "dept",
    "committee",
    "committee3",
    "grid",
    "property",
    "repair1",
    "repair2",
    "resident",
    "merchant",
    "volunteer",
];

/// Latin words a Chinese page may show: product and protocol names, file formats, units, codes.
const ALLOWED_WORDS: &[&str] = &[
    // the language switch names the other language in its own words
    "English", // protocols, formats and interfaces
    "API", "MQTT", "Webhook", "webhook", "Open311", "URL", "ID", "SOS", "JSON", "CSV", "XLSX",
    "XLS", "Excel", "QR", "HMAC", "SHA", "SMTP", "HTTP", "HTTPS", "OpenAPI", "GBK", "SVG", "POST",
    "WGS", // image and table file formats (also as file extensions)
    "JPEG", "PNG", "WebP", "xlsx", "xls", "csv", // units
    "MB",
];

/// How deep to follow links from `/`, and how many pages of one shape to open per login.
const DEPTH: usize = 3;
const PER_SHAPE: usize = 2;

/// A link's shape: ids and numbers in the path become `{}`, the query keeps its keys only.
fn shape(href: &str) -> String {
    let (path, query) = href.split_once('?').unwrap_or((href, ""));
    let segs: Vec<String> = path
        .split('/')
        .map(|s| {
            if s.len() >= 16 || (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())) {
                "{}".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    let mut keys: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split('=').next().unwrap_or(kv))
        .collect();
    keys.sort();
    keys.dedup();
    format!("{}?{}", segs.join("/"), keys.join("&"))
}

/// Links worth opening: pages of this site, not downloads, the API, static files or the event
/// stream.
fn followable(href: &str) -> Option<String> {
    let href = href.split('#').next().unwrap_or("");
    if !href.starts_with('/') || href.starts_with("//") {
        return None;
    }
    for skip in [
        "/api/",
        "/static/",
        "/events",
        "/metrics",
        "/open311/",
        "/healthz",
        "/readyz",
    ] {
        if href.starts_with(skip) {
            return None;
        }
    }
    Some(href.to_string())
}

/// Latin words outside the allow-list in a text, each with the text around it. A token with a
/// digit in it (`WGS-84`, a plate, an id such as `01a2…-afcf-…`) is a code and counts as none;
/// so are addresses and URLs.
fn english_words(text: &str, out: &mut BTreeMap<String, String>) {
    let chunks: Vec<&str> = text.split_whitespace().collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if chunk.contains("://") || chunk.contains('@') {
            continue;
        }
        let tokens =
            chunk.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'));
        for token in tokens {
            if token.chars().any(|c| c.is_ascii_digit()) {
                continue;
            }
            for w in token.split(['-', '.']) {
                if w.chars().filter(|c| c.is_ascii_alphabetic()).count() >= 2
                    && !ALLOWED_WORDS.contains(&w)
                {
                    let around = chunks[i.saturating_sub(3)..(i + 4).min(chunks.len())].join(" ");
                    out.entry(w.to_string())
                        .or_insert_with(|| around.chars().take(120).collect());
                }
            }
        }
    }
}

/// Everything wrong with one page.
fn check(doc: &Doc, zh: bool) -> Vec<String> {
    let mut bad = Vec::new();
    // Well-formed: the parser had nothing to repair (no stray or misnested tags, no missing
    // doctype, no unescaped `<` in text).
    for e in doc.parse_errors() {
        bad.push(format!("parse error: {e}"));
    }
    for h in doc.head_problems() {
        bad.push(format!("head: {h}"));
    }
    if doc.title().trim_start().starts_with('·') {
        bad.push("empty title".into());
    }
    let h1 = doc.count("h1");
    let main_h1 = doc.count("main h1");
    if h1 != 1 || main_h1 != 1 {
        bad.push(format!("{h1} <h1> ({main_h1} inside <main>)"));
    }
    if doc.count("main") != 1 {
        bad.push(format!("{} <main>", doc.count("main")));
    }
    // Every visible form field has a name a screen reader reads out.
    let labels: BTreeSet<String> = doc.attrs("label[for]", "for").into_iter().collect();
    for f in doc.select("input, select, textarea") {
        let kind = f.attr("type").unwrap_or("text");
        if f.value().name() == "input"
            && matches!(kind, "hidden" | "submit" | "button" | "reset" | "image")
        {
            continue;
        }
        let labelled = f.attr("aria-label").is_some_and(|l| !l.trim().is_empty())
            || f.attr("aria-labelledby").is_some()
            || f.attr("id").is_some_and(|id| labels.contains(id))
            || Doc::within(f, "label");
        if !labelled {
            bad.push(format!("field without a label: {}", short(&f.html())));
        }
    }
    // Labels point at fields that exist.
    for id in &labels {
        if !doc.has(&format!("[id='{id}']")) {
            bad.push(format!("<label for={id}> names no element"));
        }
    }
    if zh {
        let mut words = BTreeMap::new();
        english_words(&doc.title(), &mut words);
        for t in chinese_texts(doc) {
            english_words(&t, &mut words);
        }
        if !words.is_empty() {
            bad.push(format!("English words on a Chinese page: {words:?}"));
        }
    }
    bad
}

/// Whether an element's text is not Chinese by declaration: a code (`<code>`, `<kbd>`,
/// `<samp>`), a name or login not to translate (`translate="no"`), content in another language
/// (the nearest `lang` is not Chinese), or nothing a reader sees (script, style, `hidden`).
fn not_chinese(e: ElementRef<'_>) -> bool {
    let chain: Vec<ElementRef<'_>> = std::iter::once(e)
        .chain(e.ancestors().filter_map(ElementRef::wrap))
        .collect();
    let marked = chain.iter().any(|a| {
        matches!(
            a.value().name(),
            "code" | "kbd" | "samp" | "script" | "style" | "template"
        ) || a.attr("translate") == Some("no")
            || a.attr("hidden").is_some()
    });
    let lang = chain.iter().find_map(|a| a.attr("lang"));
    marked || lang.is_some_and(|l| !l.starts_with("zh"))
}

/// The texts a reader of a Chinese page meets in its body — text, and the names and hints in
/// attributes (`aria-label`, `placeholder`, `alt`, `title`, the value of a submit input) — less
/// what is declared not Chinese.
fn chinese_texts(doc: &Doc) -> Vec<String> {
    let mut out = Vec::new();
    for node in doc.first("body").descendants() {
        if let Some(t) = node.value().as_text() {
            if node
                .parent()
                .and_then(ElementRef::wrap)
                .is_some_and(|p| !not_chinese(p))
            {
                out.push(t.to_string());
            }
        } else if let Some(e) = ElementRef::wrap(node) {
            if not_chinese(e) {
                continue;
            }
            for a in ["aria-label", "placeholder", "alt", "title"] {
                if let Some(v) = e.attr(a) {
                    out.push(v.to_string());
                }
            }
            if e.value().name() == "input" && matches!(e.attr("type"), Some("submit" | "button")) {
                out.extend(e.attr("value").map(str::to_string));
            }
        }
    }
    out
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

/// Sign in through the page form, as a browser does; the session cookie.
async fn sign_in(app: &TestApp, login: &str) -> String {
    let body = crate::common::form(&[
        ("login", login),
        ("password", crate::common::PASSWORD),
        ("next", "/"),
    ]);
    let r = app
        .call(
            "POST",
            "/login",
            None,
            Some(("application/x-www-form-urlencoded", body)),
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "sign in {login}: {}", r.text());
    r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// What the demo lacks for every page to have something to show: a report, a visitor pass and
/// a correction from the resident, an SOS alarm, a webhook and a custom role.
async fn seed_details(app: &TestApp) {
    let resident = app.login("resident").await;
    let (_, room) = app.home_of("resident").await;
    app.post(
        &resident,
        "/api/v1/reports",
        json!({ "category": "repair_common", "description": "3楼楼道灯不亮，晚上很危险", "place_id": room, "public": true }),
    )
    .await
    .expect(201);
    app.post(
        &resident,
        "/api/v1/access/passes",
        json!({ "visitor_name": "张访客", "phone": "139 1234 5678", "valid_until": app.store.now_ms() + 7_200_000 }),
    )
    .await
    .expect(201);
    app.post(
        &resident,
        "/api/v1/me/corrections",
        json!({ "field": "note", "new_value": "请核实" }),
    )
    .await
    .expect(201);
    app.post(&resident, "/api/v1/me/sos", json!({})).await.ok();
    let c1 = app.place_id("community", "幸福里社区").await;
    let admin = app.login("admin").await;
    app.post(
        &admin,
        "/api/v1/webhooks",
        json!({ "name": "物业系统", "url": "http://127.0.0.1:9/hook", "place_id": c1, "kinds": ["report.*"] }),
    )
    .await
    .expect(201);
    let committee = app.login("committee").await;
    app.post(
        &committee,
        "/api/v1/roles",
        json!({ "name": "前台", "kind": "area", "place_id": c1, "actions": ["household_read", "person_read", "place_read"] }),
    )
    .await
    .expect(201);
}

/// Whether a visited path is an instance of a route pattern (`/me/passes/{id}`).
fn instance_of(route: &str, uri: &str) -> bool {
    let path = uri.split('?').next().unwrap_or(uri);
    let (r, u): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    r.len() == u.len()
        && r.iter()
            .zip(&u)
            .all(|(a, b)| a == b || (a.starts_with('{') && !b.is_empty()))
}

#[tokio::test]
async fn every_page_of_every_demo_account_is_well_formed_labelled_and_chinese() {
    // The checks catch what they are for.
    let broken = Doc::parse(
        "<!doctype html><html lang=zh-CN><head><title>访客<form action=/x></form></title></head>\
         <body><main><h1>a</h1><h1>b</h1><p><div></span><input name=q> Submit</main></body></html>",
    );
    let found = check(&broken, true).join("\n");
    for want in [
        "parse error",
        "head:",
        "2 <h1>",
        "field without a label",
        "\"Submit\"",
    ] {
        assert!(found.contains(want), "{want} not found in:\n{found}");
    }

    let app = TestApp::demo().await;
    seed_details(&app).await;
    let mut findings: Vec<String> = Vec::new();
    let mut opened = 0usize;
    let mut shapes_seen: BTreeSet<String> = BTreeSet::new();
    let mut visited: BTreeSet<String> = BTreeSet::new();
    // Pages without an account, and the error pages.
    for (uri, cookie, status) in [
        ("/login", String::new(), 200),
        ("/no-such-page", sign_in(&app, "committee").await, 404),
        ("/registry/persons", sign_in(&app, "resident").await, 403),
    ] {
        let r = app
            .call("GET", uri, None, None, &[("cookie", &cookie)])
            .await;
        assert_eq!(r.status, status, "{uri}");
        visited.insert(uri.to_string());
        opened += 1;
        for f in check(&r.doc(), true) {
            findings.push(format!("{uri}: {f}"));
        }
    }
    for login in LOGINS {
        let cookie = sign_in(&app, login).await;
        let mut per_shape: HashMap<String, usize> = HashMap::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<(String, usize, String)> = VecDeque::new();
        queue.push_back(("/".to_string(), 0, "(start)".to_string()));
        seen.insert("/".to_string());
        while let Some((href, depth, from)) = queue.pop_front() {
            // Follow redirects (the home page sends each role to its own start).
            let mut uri = href.clone();
            let mut resp = app
                .call("GET", &uri, None, None, &[("cookie", &cookie)])
                .await;
            for _ in 0..3 {
                if !resp.status.is_redirection() {
                    break;
                }
                uri = resp.headers["location"].to_str().unwrap().to_string();
                resp = app
                    .call("GET", &uri, None, None, &[("cookie", &cookie)])
                    .await;
            }
            if resp.status != 200 {
                findings.push(format!(
                    "{login} {href} (linked from {from}): {}",
                    resp.status
                ));
                continue;
            }
            let html = resp
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("text/html"));
            if !html {
                continue;
            }
            opened += 1;
            shapes_seen.insert(shape(&uri));
            visited.insert(href.clone());
            visited.insert(uri.clone());
            let text = resp.text();
            let doc = Doc::parse(&text);
            let zh = doc.attr("html", "lang").starts_with("zh");
            for f in check(&doc, zh) {
                findings.push(format!("{login} {uri}: {f}"));
            }

            if depth >= DEPTH {
                continue;
            }
            for a in doc.select("a[href]") {
                if a.attr("download").is_some() {
                    continue;
                }
                let Some(next) = a.attr("href").and_then(followable) else {
                    continue;
                };
                if !seen.insert(next.clone()) {
                    continue;
                }
                let n = per_shape.entry(shape(&next)).or_default();
                if *n >= PER_SHAPE {
                    continue;
                }
                *n += 1;
                queue.push_back((next, depth + 1, uri.clone()));
            }
        }
    }
    // The pages a resident's home forms answer with (SOS, check-in) are pages too.
    let cookie = sign_in(&app, "resident").await;
    let resident = crate::common::Session {
        cookie: cookie.clone(),
        csrf: String::new(),
        user: serde_json::Value::Null,
    };
    for action in ["/me/checkin", "/me/sos"] {
        let home = app
            .call("GET", "/me", None, None, &[("cookie", &cookie)])
            .await
            .doc();
        let r = submit(
            &app,
            &resident,
            &home,
            &format!("main form[action='{action}']"),
            &[],
        )
        .await;
        // The SOS answers with its status page (post/redirect/get), the check-in with a page.
        let r = if r.status == 303 {
            let to = r.headers["location"].to_str().unwrap().to_string();
            app.call("GET", &to, None, None, &[("cookie", &cookie)])
                .await
        } else {
            r
        };
        assert_eq!(r.status, 200, "{action}: {}", r.text());
        opened += 1;
        for f in check(&r.doc(), true) {
            findings.push(format!("resident POST {action}: {f}"));
        }
    }
    eprintln!(
        "all pages: {opened} pages opened, {} shapes",
        shapes_seen.len()
    );
    assert!(opened > 50, "the crawl reached only {opened} pages");
    // Every page the modules serve was reached from the navigation by some demo account.
    let routes: Vec<&str> = ALL
        .iter()
        .filter_map(|m| m.pages)
        .flat_map(|pages| {
            pages()
                .routes()
                .iter()
                .filter(|(m, _)| *m == Method::GET)
                .map(|(_, p)| *p)
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.starts_with("/open311/"))
        .collect();
    for route in routes {
        if !visited.iter().any(|u| instance_of(route, u)) {
            findings.push(format!("{route}: no demo account reaches it by a link"));
        }
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
    app.close().await;
}

/// Every device kind has a name on the pages (the safety page showed `gate_face` as it is).
#[test]
fn every_device_kind_has_a_name_in_both_languages() {
    use linli_core::i18n::{self, Lang};
    for kind in linli_core::iot::DEVICE_KINDS {
        for lang in [Lang::ZhCn, Lang::En] {
            let key = format!("web-safety-kind-{kind}");
            assert!(i18n::has(lang, &key), "{key} ({lang:?})");
        }
    }
}
