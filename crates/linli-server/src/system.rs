//! Health, readiness, Prometheus metrics, and the JSON 404.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use linli_core::AppError;

use crate::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    pages().into_router()
}

/// Health, readiness and metrics, recorded for the authorization matrix.
pub fn pages() -> crate::manifest::Pages {
    crate::manifest::Pages::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics_text)
}

/// One Prometheus recorder per process (tests build several apps in one process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The database answers. The answer is JSON: `{"status": "ready", "warnings": [...]}`. Warnings
/// (such as a working-day calendar lacking the current or next year) do not make the instance
/// unready — it serves correctly, with deadlines in clock days — so the status stays 200 and
/// load balancers keep sending traffic, while monitoring and people can read what is wrong.
async fn readyz(State(s): State<AppState>) -> Response {
    // A consumer that makes no progress (writer stuck, batches failing, broker out of reach)
    // takes the instance out of rotation: devices and the broker go to the others.
    if let Some(problem) = s.iot.get().and_then(|i| i.health().problem()) {
        tracing::warn!(problem, "not ready");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable", "error": problem })),
        )
            .into_response();
    }
    match s.store.calendar_missing_years().await {
        Ok(missing) => {
            let warnings: Vec<serde_json::Value> = missing
                .iter()
                .map(|y| {
                    serde_json::json!({
                        "code": "calendar_missing_year",
                        "year": y,
                        "message": format!("working-day calendar lacks {y}: deadlines into it are counted in clock days; add it with POST /api/v1/work-calendar"),
                    })
                })
                .collect();
            axum::Json(serde_json::json!({ "status": "ready", "warnings": warnings }))
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e.code, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({ "status": "unavailable", "error": "database unavailable" }),
                ),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    metrics::gauge!("linli_uptime_seconds").set(s.started.elapsed().as_secs_f64());
    metrics::gauge!("linli_db_read_pool_connections").set(f64::from(s.store.db.read.size()));
    metrics::gauge!("linli_db_read_pool_idle").set(s.store.db.read.num_idle() as f64);
    if let Some(iot) = s.iot.get() {
        let healthy = iot.health().problem().is_none();
        metrics::gauge!("linli_iot_consumer_healthy").set(if healthy { 1.0 } else { 0.0 });
        metrics::gauge!("linli_iot_queue_depth").set(iot.queued() as f64);
        metrics::gauge!("linli_iot_batches_failed").set(
            iot.stats()
                .failed_batches
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        );
    }
    if let Ok(missing) = s.store.calendar_missing_years().await {
        metrics::gauge!("linli_work_calendar_missing_years").set(missing.len() as f64);
    }
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// 404: JSON under `/api`, a page in the site's style elsewhere.
pub async fn not_found(
    axum::extract::State(s): axum::extract::State<AppState>,
    mut parts: axum::http::request::Parts,
) -> Response {
    if parts.uri.path().starts_with("/api/") {
        return ApiError(AppError::not_found("not_found")).into_response();
    }
    // A signed-in visitor keeps the navigation on the "not found" page: it is a dead end
    // otherwise.
    use axum::extract::FromRequestParts;
    let page = match crate::web::WebUser::from_request_parts(&mut parts, &s).await {
        Ok(user) => user.page,
        Err(_) => crate::web::anonymous_page(&parts),
    };
    crate::web::error_page(&page, AppError::not_found("not_found"))
}
