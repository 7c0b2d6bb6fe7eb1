//! A resident's own household: read, export (JSON), ask for corrections.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_store::registry::corrections::{Correction, NewCorrection, OwnExport};
use linli_store::registry::households::HouseholdView;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_household))
        .routes(routes!(my_export))
        .routes(routes!(my_correction))
}

/// The caller's own household.
#[utoipa::path(get, path = "/api/v1/me/household", tag = "me",
    responses((status = 200, body = HouseholdView), (status = 403, body = ErrorBody)))]
pub async fn my_household(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<HouseholdView>> {
    Ok(Json(s.store.own_household(&p).await?))
}

/// Everything Linli holds about the caller's household, as a JSON download (个人信息保护法).
#[utoipa::path(get, path = "/api/v1/me/export", tag = "me",
    responses((status = 200, body = OwnExport), (status = 403, body = ErrorBody)))]
pub async fn my_export(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Response> {
    let person = s.store.own_person_id(&p).await?;
    let export = s
        .store
        .own_export(&p, person.as_deref(), &crate::modules::record_sections())
        .await?;
    let mut resp = Json(export).into_response();
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"linli-my-household.json\""),
    );
    Ok(resp)
}

/// Ask the committee to correct something in the household's data.
#[utoipa::path(post, path = "/api/v1/me/corrections", tag = "me", request_body = NewCorrection,
    responses((status = 201, body = Correction), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn my_correction(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewCorrection>,
) -> ApiResult<(StatusCode, Json<Correction>)> {
    let c = s.store.submit_correction(&p, new).await?;
    Ok((StatusCode::CREATED, Json(c)))
}
