//! Accounts and role bindings.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_store::accounts::users::{NewUser, UserInfo};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
}

/// Accounts bound inside the caller's area.
#[utoipa::path(get, path = "/api/v1/users", tag = "accounts", responses((status = 200, body = Vec<UserInfo>), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Vec<UserInfo>>> {
    Ok(Json(s.store.users(&p).await?))
}

/// Create an account with role bindings no wider than the caller's own rights.
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = NewUser,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_user(&p, new).await?),
    ))
}

/// Disable an account at once (a leaver): it can no longer sign in, and every session and API
/// token it holds ends in the same audited transaction. Needs user admin over every binding of
/// the account; nobody disables their own.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = UserInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<UserInfo>> {
    let u = s.store.set_user_disabled(&p, &id, true).await?;
    // The store told every instance (bus event `account.revoked`); here it is done before the
    // answer, so the account's next request on this instance is already refused.
    s.auth_cache.remove_user(&id);
    Ok(Json(u))
}

/// Enable a disabled account again (its old sessions and tokens stay ended). Same rights as
/// disabling.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "accounts", params(("id" = String, Path)),
    responses((status = 200, body = UserInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<UserInfo>> {
    let u = s.store.set_user_disabled(&p, &id, false).await?;
    s.auth_cache.remove_user(&id);
    Ok(Json(u))
}
