//! The celebrations' REST API: list what the caller's community shared, share one, congratulate,
//! hide (staff).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_store::celebrations::{Celebration, NewCelebration};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, share))
        .routes(routes!(get_one))
        .routes(routes!(congratulate))
        .routes(routes!(hide))
}

/// The newest celebrations of the caller's community (residents), or of the area they moderate
/// (staff, hidden ones included).
#[utoipa::path(get, path = "/api/v1/celebrations", tag = "celebrations",
    responses((status = 200, body = Vec<Celebration>), (status = 403, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Vec<Celebration>>> {
    Ok(Json(s.store.celebrations(&p).await?))
}

/// Share a celebration of the caller's own household with the community.
#[utoipa::path(post, path = "/api/v1/celebrations", tag = "celebrations", request_body = NewCelebration,
    responses((status = 201, body = Celebration), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn share(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewCelebration>,
) -> ApiResult<(StatusCode, Json<Celebration>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.share_celebration(&p, new).await?),
    ))
}

/// One celebration the caller may see.
#[utoipa::path(get, path = "/api/v1/celebrations/{id}", tag = "celebrations", params(("id" = String, Path)),
    responses((status = 200, body = Celebration), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Celebration>> {
    Ok(Json(s.store.celebration(&p, &id).await?))
}

/// Congratulate (道喜): once per person, not on one's own household's post.
#[utoipa::path(post, path = "/api/v1/celebrations/{id}/congratulations", tag = "celebrations", params(("id" = String, Path)),
    responses((status = 200, body = Celebration), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn congratulate(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Celebration>> {
    Ok(Json(s.store.congratulate(&p, &id).await?))
}

/// Hide a post from the community (staff who moderate the community).
#[utoipa::path(post, path = "/api/v1/celebrations/{id}/hide", tag = "celebrations", params(("id" = String, Path)),
    responses((status = 200, body = Celebration), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn hide(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Celebration>> {
    Ok(Json(s.store.hide_celebration(&p, &id).await?))
}
