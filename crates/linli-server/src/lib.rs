//! The Linli HTTP server: REST API with OpenAPI, health, readiness, metrics.
//!
//! Request path: `context` middleware (request id, language) → security headers → metrics →
//! route → extractors (`Auth` resolves the caller, CSRF for cookie writes) → handler asks the
//! principal for a `Grant` → store functions filter by the grant's subtrees in SQL.

pub mod api;
pub mod auth_cache;
mod compress;
pub mod error;
pub mod extract;
pub mod limiter;
pub mod live;
pub mod manifest;
pub mod modules;
pub mod nul;
pub mod open311;
pub mod system;
pub mod web;

// The modules' manifests (each folder grows to hold its module's API and pages).
pub mod access;
pub mod celebrations;
pub mod iot;
pub mod notify;
pub mod platform;
pub mod registry;
pub mod reports;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use linli_core::i18n::Lang;
use linli_store::Store;

use crate::error::{CTX, RequestCtx};
use crate::limiter::{ACCOUNT_POLICY, IP_POLICY, Limiter};

/// Settings the server needs at run time.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Mark the session cookie `Secure` (when served over TLS, directly or behind a proxy).
    pub secure_cookies: bool,
    /// The data directory (uploads waiting for confirmation live in `uploads/` below it).
    pub data_dir: std::path::PathBuf,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed: behind HAProxy
    /// every connection comes from the proxy, and throttling by its address would lock
    /// everyone out together.
    pub trusted_proxies: Vec<extract::IpBlock>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            secure_cookies: false,
            data_dir: std::env::temp_dir().join("linli-data"),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The server's shared state: one allocation, so the clone that every extractor makes is a
/// reference count (it was a dozen, plus copies of a path and a URL, on every request).
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub struct AppInner {
    pub store: Store,
    pub config: ServerConfig,
    pub account_limiter: Arc<Limiter>,
    pub ip_limiter: Arc<Limiter>,
    /// A real argon2 hash to verify against when the login is unknown (equal timing).
    pub dummy_hash: Arc<String>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub started: Instant,
    /// One-time form tokens (double-submit protection for web forms).
    pub form_once: Arc<web::FormOnce>,
    /// Recently resolved sessions and tokens.
    pub auth_cache: Arc<auth_cache::AuthCache>,
    /// The IoT runtime (HTTP ingest), once started by `serve`.
    pub iot: Arc<std::sync::OnceLock<linli_iot::Iot>>,
    /// Set when the server begins to shut down: live event streams end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig) -> AppState {
        let auth_cache: Arc<auth_cache::AuthCache> = Arc::default();
        auth_cache::forget_revoked_accounts(&store, &auth_cache);
        AppState(Arc::new(AppInner {
            store: store.clone(),
            config,
            account_limiter: Arc::new(Limiter::new(ACCOUNT_POLICY, "account", store.clone())),
            ip_limiter: Arc::new(Limiter::new(IP_POLICY, "ip", store.clone())),
            dummy_hash: Arc::new(linli_core::password::hash("linli-dummy-password")),
            metrics: system::metrics_handle(),
            started: Instant::now(),
            form_once: Arc::new(web::FormOnce::new(store.clone())),
            auth_cache,
            iot: Arc::default(),
            shutdown: tokio::sync::watch::channel(false).0,
        }))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Linli (邻里) API", description = "Smart-community governance and service platform. Errors are `{code, message, details, request_id}`; messages follow `Accept-Language` (zh-CN default, en)."),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(extract::SESSION_COOKIE))),
        );
    }
}

/// The API router and its OpenAPI document, from the same annotations: every module's
/// router, and its tags.
pub fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi());
    let mut tags = Vec::new();
    for api in modules::ALL.iter().filter_map(|m| m.api.as_ref()) {
        router = router.merge((api.router)());
        for (name, description) in api.tags {
            tags.push(
                utoipa::openapi::tag::TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build(),
            );
        }
    }
    let (router, mut doc) = router.split_for_parts();
    doc.tags = Some(tags);
    (router, doc)
}

/// Every module's pages.
pub fn module_pages() -> Router<AppState> {
    let mut router = Router::new();
    for pages in modules::ALL.iter().filter_map(|m| m.pages) {
        router = router.merge(pages().into_router());
    }
    router
}

/// Where the browsable API docs and the OpenAPI document are served.
const DOCS_PATH: &str = "/api/docs";
const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The routes outside the modules' API and pages: health and metrics, the home page, static
/// files, the live event stream, the API docs (`utoipa-swagger-ui` serves `/api/docs`, its
/// files below it, and the OpenAPI document). The authorization matrix needs a probe for each.
pub fn kernel_routes() -> Vec<(axum::http::Method, &'static str)> {
    let mut routes: Vec<(axum::http::Method, &'static str)> = system::pages()
        .routes()
        .iter()
        .chain(web::kernel_pages().routes())
        .cloned()
        .collect();
    for path in [DOCS_PATH, "/api/docs/", "/api/docs/{*rest}", OPENAPI_PATH] {
        routes.push((axum::http::Method::GET, path));
    }
    routes
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = api_parts();
    let docs: Router<AppState> = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, openapi)
        .into();
    let clock = state.store.clock.clone();
    Router::new()
        .merge(api)
        .merge(docs)
        .merge(system::router())
        .merge(web::router())
        .merge(module_pages())
        .fallback(system::not_found)
        .with_state(state)
        .layer(middleware::from_fn(compress::gzip_text))
        .layer(middleware::from_fn(nul::refuse_nul))
        .layer(middleware::from_fn(same_origin_writes))
        .layer(middleware::from_fn(metrics_layer))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(clock, context))
}

/// Request id, language and time zone for everything that runs while handling the request.
async fn context(
    axum::extract::State(clock): axum::extract::State<linli_store::Clock>,
    req: Request,
    next: Next,
) -> Response {
    let lang = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix("linli_lang="))
        })
        .and_then(Lang::from_tag)
        .or_else(|| {
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map(Lang::from_accept_language)
        })
        .unwrap_or_default();
    let request_id = uuid::Uuid::now_v7().simple().to_string()[20..].to_string();
    let ctx = RequestCtx {
        lang,
        request_id: request_id.clone(),
        zone: clock.zone(),
    };
    // A panic in a handler answers a plain 500 with the request id (and is logged), instead of
    // dropping the connection without a response.
    let mut resp = {
        use futures_util::FutureExt;
        match std::panic::AssertUnwindSafe(CTX.scope(ctx.clone(), next.run(req)))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(_) => {
                tracing::error!(request_id = %request_id, "handler panicked");
                CTX.scope(ctx, async {
                    crate::error::ApiError::from(linli_core::AppError::internal()).into_response()
                })
                .await
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp.headers_mut().insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.tag()),
    );
    resp
}

async fn security_headers(req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with("/api/docs");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let csp = if docs {
        // The bundled Swagger UI sets inline styles.
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
    } else {
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    };
    h.insert("content-security-policy", HeaderValue::from_static(csp));
    resp
}

/// Cross-site request forgery, refused for every state-changing request by construction (on top
/// of the per-form tokens and SameSite cookies): a browser tells where a request comes from
/// (`Sec-Fetch-Site`, `Origin`), and a write that another site's page sends is refused before
/// any handler runs. Requests without those headers (curl, integrations) are not CSRF; calls with
/// an `Authorization` header carry their own credential, not the browser's cookie, and the
/// Open311 API is open to other sites' pages by design (it authenticates by `api_key`).
async fn same_origin_writes(req: Request, next: Next) -> Response {
    use axum::http::Method;
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes
        && !req.headers().contains_key(header::AUTHORIZATION)
        && !req.uri().path().starts_with("/open311/")
        && is_cross_site(req.headers())
    {
        return crate::error::ApiError::from(
            linli_core::AppError::forbidden()
                .details(serde_json::json!({ "reason": "auth.cross_site" })),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the browser says the request comes from another site.
fn is_cross_site(h: &axum::http::HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let (Some(origin), Some(host)) = (
        h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        h.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    // `Origin: null` (sandboxed frames, some redirects) is never our own page.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

async fn metrics_layer(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("linli_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("linli_http_request_duration_seconds", "method" => method, "route" => route).record(start.elapsed().as_secs_f64());
    resp
}

/// Serve until ctrl-c / SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let stopping = state.shutdown.clone();
    let app = app(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Live streams end now; other requests finish.
        let _ = stopping.send(true);
    })
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
