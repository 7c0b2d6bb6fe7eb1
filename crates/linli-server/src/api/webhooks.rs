//! Outbound webhooks (`WebhookAdmin`): registered for a place inside the caller's area; the
//! signing secret is shown once, at creation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::notify::outbox::Delivery;
use linli_store::notify::webhooks::{NewWebhook, Webhook, WebhookCreated, WebhookPatch};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(ping_webhook))
        .routes(routes!(deliveries))
        .routes(routes!(retry_delivery))
}

/// Webhooks in the caller's area.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "notifications",
    responses((status = 200, body = Vec<Webhook>), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Vec<Webhook>>> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok(Json(s.store.webhooks(&g).await?))
}

/// Register a webhook; the response carries the signing secret (shown once).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "notifications", request_body = NewWebhook,
    responses((status = 201, body = WebhookCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(w): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookCreated>)> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_webhook(&g, &Actor::from(&p), w).await?),
    ))
}

/// One webhook.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "notifications", params(("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok(Json(s.store.webhook(&g, &id).await?))
}

/// Change name, URL, kinds, or pause (`active: false`) and resume.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "notifications", params(("id" = String, Path)), request_body = WebhookPatch,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(w): ApiJson<WebhookPatch>,
) -> ApiResult<Json<Webhook>> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok(Json(
        s.store.update_webhook(&g, &Actor::from(&p), &id, w).await?,
    ))
}

/// Remove a webhook; pending deliveries are cancelled.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "notifications", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let g = p.grant(Action::WebhookAdmin)?;
    s.store.delete_webhook(&g, &Actor::from(&p), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queue a signed `ping` delivery to the webhook.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/ping", tag = "notifications", params(("id" = String, Path)),
    responses((status = 202, body = Delivery), (status = 404, body = ErrorBody)))]
pub async fn ping_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.store.ping_webhook(&g, &Actor::from(&p), &id).await?),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// 1–500, default 100.
    pub limit: Option<i64>,
}

/// The delivery log of a webhook, newest first (attempts, last status or error).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "notifications", params(("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = Vec<Delivery>), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Vec<Delivery>>> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok(Json(
        s.store
            .webhook_deliveries(&g, &id, q.limit.unwrap_or(100))
            .await?,
    ))
}

/// Send a dead delivery again, now (same delivery id, a fresh retry schedule).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "notifications",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = Delivery), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_delivery(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Json<Delivery>> {
    let g = p.grant(Action::WebhookAdmin)?;
    Ok(Json(
        s.store
            .retry_delivery(&g, &Actor::from(&p), &id, &delivery_id)
            .await?,
    ))
}
