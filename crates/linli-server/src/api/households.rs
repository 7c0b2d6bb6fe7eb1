//! Households (一户一表).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::registry::households::{
    HouseholdPage, HouseholdPatch, HouseholdQuery, HouseholdView, NewHousehold,
};
use linli_store::registry::persons::{NewPerson, PersonSummary};

use crate::AppState;
use crate::api::sensitive;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_households, create_household))
        .routes(routes!(get_household, update_household))
        .routes(routes!(household_linked))
        .routes(routes!(add_member))
}

/// Households in the caller's area (optionally under a place).
#[utoipa::path(get, path = "/api/v1/households", tag = "registry", params(HouseholdQuery),
    responses((status = 200, body = HouseholdPage), (status = 403, body = ErrorBody)))]
pub async fn list_households(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<HouseholdQuery>,
) -> ApiResult<Json<HouseholdPage>> {
    let g = p.grant(Action::HouseholdRead)?;
    Ok(Json(s.store.households(&g, &q).await?))
}

/// The whole household: members, former members, labels, correction requests.
#[utoipa::path(get, path = "/api/v1/households/{id}", tag = "registry", params(("id" = String, Path)),
    responses((status = 200, body = HouseholdView), (status = 404, body = ErrorBody)))]
pub async fn get_household(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<HouseholdView>> {
    let g = p.grant(Action::HouseholdRead)?;
    Ok(Json(
        s.store.household(&g, sensitive(&p).as_ref(), &id).await?,
    ))
}

/// The rest of the household's record (一户一表): its reports, the devices in its home and their
/// alarms, vehicles, visitor passes, members' SOS contacts and check-ins, gate passages — each
/// module's sections. A section is absent when the caller may not read that kind of data here;
/// the household's own residents see all of it. History stops at the residence boundary.
#[utoipa::path(get, path = "/api/v1/households/{id}/linked", tag = "registry", params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "Sections by key (reports, devices, alarms, vehicles, visitor_passes, care, gate_passages, and those of later modules); a section the caller may not read is absent"), (status = 404, body = ErrorBody)))]
pub async fn household_linked(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Map<String, serde_json::Value>>> {
    Ok(Json(
        s.store
            .household_record(&p, &id, &crate::modules::record_sections())
            .await?,
    ))
}

/// Register a household in a room, with its head.
#[utoipa::path(post, path = "/api/v1/households", tag = "registry", request_body = NewHousehold,
    responses((status = 201, body = HouseholdView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_household(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewHousehold>,
) -> ApiResult<(StatusCode, Json<HouseholdView>)> {
    let g = p.grant(Action::HouseholdWrite)?;
    p.grant(Action::PersonWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.store
                .create_household(&g, sensitive(&p).as_ref(), &Actor::from(&p), new)
                .await?,
        ),
    ))
}

/// Change tenure, move-in date or note (send the version you read).
#[utoipa::path(patch, path = "/api/v1/households/{id}", tag = "registry", params(("id" = String, Path)), request_body = HouseholdPatch,
    responses((status = 200, body = HouseholdView), (status = 409, body = ErrorBody)))]
pub async fn update_household(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<HouseholdPatch>,
) -> ApiResult<Json<HouseholdView>> {
    let g = p.grant(Action::HouseholdWrite)?;
    Ok(Json(
        s.store
            .update_household(&g, sensitive(&p).as_ref(), &Actor::from(&p), &id, patch)
            .await?,
    ))
}

/// Add a person to the household (a new person, or one registered without a current home).
#[utoipa::path(post, path = "/api/v1/households/{id}/members", tag = "registry", params(("id" = String, Path)), request_body = NewPerson,
    responses((status = 201, body = PersonSummary), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_member(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<NewPerson>,
) -> ApiResult<(StatusCode, Json<PersonSummary>)> {
    let g = p.grant(Action::PersonWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.store
                .add_person(&g, sensitive(&p).as_ref(), &Actor::from(&p), &id, new)
                .await?,
        ),
    ))
}
