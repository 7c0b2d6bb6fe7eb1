//! Accounts and role bindings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_store::accounts::users::{NewUser, UserInfo};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user))
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
