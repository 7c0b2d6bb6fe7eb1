//! Roles as data: the catalogue of actions and built-in role templates, and the custom roles an
//! administrator composes from actions they hold (no wider than their own rights; audited).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_store::accounts::roles::{NewRole, RolePatch, RoleView, RolesOverview};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role, delete_role))
}

/// Every declared action (with its module and whether it is sensitive), the built-in role
/// templates with their actions, and the custom roles of the caller's area.
#[utoipa::path(get, path = "/api/v1/roles", tag = "accounts",
    responses((status = 200, body = RolesOverview), (status = 403, body = ErrorBody)))]
pub async fn list_roles(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<RolesOverview>> {
    Ok(Json(s.store.roles_overview(&p).await?))
}

/// Compose a custom role at a place of the caller's area, from actions the caller holds there.
#[utoipa::path(post, path = "/api/v1/roles", tag = "accounts", request_body = NewRole,
    responses((status = 201, body = RoleView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewRole>,
) -> ApiResult<(StatusCode, Json<RoleView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_role(&p, new).await?),
    ))
}

/// One custom role of the caller's area.
#[utoipa::path(get, path = "/api/v1/roles/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = RoleView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RoleView>> {
    Ok(Json(s.store.role(&p, &id).await?))
}

/// Rename a custom role or change its actions (send the version you read). Its holders get the
/// new actions within seconds.
#[utoipa::path(patch, path = "/api/v1/roles/{id}", tag = "accounts", params(("id" = String, Path)), request_body = RolePatch,
    responses((status = 200, body = RoleView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<RolePatch>,
) -> ApiResult<Json<RoleView>> {
    let role = s.store.update_role(&p, &id, patch).await?;
    // Holders' cached principals carry the old actions: forget them here at once.
    s.auth_cache.clear();
    Ok(Json(role))
}

/// Delete a custom role nobody holds any more.
#[utoipa::path(delete, path = "/api/v1/roles/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.store.delete_role(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
