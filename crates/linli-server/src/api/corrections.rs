//! Reviewing residents' correction requests.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::registry::corrections::{Correction, Decision};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_corrections))
        .routes(routes!(decide))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CorrectionQuery {
    /// pending, approved, rejected
    pub status: Option<String>,
}

/// Correction requests in the caller's area.
#[utoipa::path(get, path = "/api/v1/corrections", tag = "registry", params(CorrectionQuery),
    responses((status = 200, body = Vec<Correction>), (status = 403, body = ErrorBody)))]
pub async fn list_corrections(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<CorrectionQuery>,
) -> ApiResult<Json<Vec<Correction>>> {
    let g = p.grant(Action::CorrectionReview)?;
    Ok(Json(
        s.store
            .corrections(&g, q.status.as_deref().filter(|s| !s.is_empty()))
            .await?,
    ))
}

/// Approve (applies the change) or reject a correction request.
#[utoipa::path(post, path = "/api/v1/corrections/{id}/decision", tag = "registry", params(("id" = String, Path)), request_body = Decision,
    responses((status = 200, body = Correction), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decide(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(d): ApiJson<Decision>,
) -> ApiResult<Json<Correction>> {
    let g = p.grant(Action::CorrectionReview)?;
    Ok(Json(
        s.store
            .decide_correction(&g, &Actor::from(&p), &id, d)
            .await?,
    ))
}
