//! Installable on a phone's home screen (a PWA): the web app manifest, its icons, a service worker
//! that only serves an offline page (pages hold personal data and are never cached), and that page.

use askama::Template;
use axum::http::request::Parts;
use axum::response::Response;

use super::{Page, anonymous_page, render, static_bytes};

pub fn pages(p: crate::manifest::Pages) -> crate::manifest::Pages {
    p.get("/manifest.webmanifest", manifest)
        .get("/sw.js", service_worker)
        .get("/offline", offline)
        .get("/static/icon.svg", icon_svg)
        .get("/static/icon-192.png", icon_192)
        .get("/static/icon-512.png", icon_512)
}

async fn manifest() -> Response {
    // One manifest for both languages: the name a phone shows under the icon is the Chinese one,
    // with the English name in `short_name`'s place only where Chinese cannot be shown.
    let body = r##"{
  "name": "邻里 · Linli 智慧社区",
  "short_name": "邻里",
  "lang": "zh-CN",
  "description": "报事、访客、一键呼叫和社区服务 · Reports, visitor passes, SOS and community services",
  "start_url": "/",
  "scope": "/",
  "display": "standalone",
  "background_color": "#ffffff",
  "theme_color": "#0b5cab",
  "icons": [
    { "src": "/static/icon-192.png", "sizes": "192x192", "type": "image/png" },
    { "src": "/static/icon-512.png", "sizes": "512x512", "type": "image/png" },
    { "src": "/static/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable" },
    { "src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml" }
  ]
}
"##;
    static_bytes(
        body.as_bytes(),
        "application/manifest+json",
        "public, max-age=3600",
    )
}

async fn service_worker() -> Response {
    // Always revalidated, so a new release replaces the worker at the next visit.
    static_bytes(
        include_bytes!("../../static/sw.js"),
        "text/javascript; charset=utf-8",
        "no-cache",
    )
}

async fn icon_svg() -> Response {
    static_bytes(
        include_bytes!("../../static/icon.svg"),
        "image/svg+xml",
        "public, max-age=86400",
    )
}

async fn icon_192() -> Response {
    static_bytes(
        include_bytes!("../../static/icon-192.png"),
        "image/png",
        "public, max-age=86400",
    )
}

async fn icon_512() -> Response {
    static_bytes(
        include_bytes!("../../static/icon-512.png"),
        "image/png",
        "public, max-age=86400",
    )
}

#[derive(Template)]
#[template(path = "offline.html")]
struct OfflineTpl {
    page: Page,
}

/// Shown by the service worker when a page cannot be reached; the same for everybody (it is
/// cached), in the language of whoever installed it.
async fn offline(parts: Parts) -> Response {
    render(&OfflineTpl {
        page: anonymous_page(&parts),
    })
}
