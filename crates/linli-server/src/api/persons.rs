//! Person search, edit, audited reveal, move-out.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::registry::links::{LinkDecision, PersonLink};
use linli_store::registry::persons::{
    MoveOut, PersonPage, PersonPatch, PersonQuery, PersonSummary, RevealRequest, Revealed,
};

use crate::AppState;
use crate::api::sensitive;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_persons))
        .routes(routes!(get_person, update_person))
        .routes(routes!(reveal_person))
        .routes(routes!(move_out))
        .routes(routes!(list_person_links))
        .routes(routes!(confirm_person_link))
        .routes(routes!(decline_person_link))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// Also the decided ones (default: pending only).
    #[serde(default)]
    pub all: bool,
}

/// Link requests about persons of the caller's area: another community registered someone with
/// the same name and ID number as one of them and asks to confirm that it is the same person
/// (see `docs/security.md`, "Identity linking across communities"). Needs `person_write`.
#[utoipa::path(get, path = "/api/v1/person-links", tag = "registry", params(LinkQuery),
    responses((status = 200, body = Vec<PersonLink>), (status = 403, body = ErrorBody)))]
pub async fn list_person_links(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<LinkQuery>,
) -> ApiResult<Json<Vec<PersonLink>>> {
    let g = p.grant(Action::PersonWrite)?;
    Ok(Json(s.store.person_links(&g, q.all).await?))
}

/// Confirm a link request: the asking community's record receives this record's phone (when it
/// has none) and labels, this record's residence ends if it had not (the person moved), and the
/// asker is told. This community keeps its record and its history. Audited.
#[utoipa::path(post, path = "/api/v1/person-links/{id}/confirm", tag = "registry", params(("id" = String, Path)), request_body = LinkDecision,
    responses((status = 200, body = PersonLink), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn confirm_person_link(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(d): ApiJson<LinkDecision>,
) -> ApiResult<Json<PersonLink>> {
    let g = p.grant(Action::PersonWrite)?;
    Ok(Json(
        s.store
            .decide_person_link(&g, &Actor::from(&p), &id, true, &d)
            .await?,
    ))
}

/// Decline a link request (with the reason): nothing is shared, and the asker is not told.
/// Audited.
#[utoipa::path(post, path = "/api/v1/person-links/{id}/decline", tag = "registry", params(("id" = String, Path)), request_body = LinkDecision,
    responses((status = 200, body = PersonLink), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decline_person_link(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(d): ApiJson<LinkDecision>,
) -> ApiResult<Json<PersonLink>> {
    let g = p.grant(Action::PersonWrite)?;
    Ok(Json(
        s.store
            .decide_person_link(&g, &Actor::from(&p), &id, false, &d)
            .await?,
    ))
}

/// Search persons by name, exact ID or phone number, label, or place — within the caller's area.
#[utoipa::path(get, path = "/api/v1/persons", tag = "registry", params(PersonQuery),
    responses((status = 200, body = PersonPage), (status = 403, body = ErrorBody)))]
pub async fn search_persons(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PersonQuery>,
) -> ApiResult<Json<PersonPage>> {
    let g = p.grant(Action::PersonRead)?;
    Ok(Json(
        s.store
            .search_persons(&g, sensitive(&p).as_ref(), &q)
            .await?,
    ))
}

/// One person (numbers masked).
#[utoipa::path(get, path = "/api/v1/persons/{id}", tag = "registry", params(("id" = String, Path)),
    responses((status = 200, body = PersonSummary), (status = 404, body = ErrorBody)))]
pub async fn get_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PersonSummary>> {
    let g = p.grant(Action::PersonRead)?;
    Ok(Json(s.store.person(&g, sensitive(&p).as_ref(), &id).await?))
}

/// Edit name, phone, relation or labels (send the version you read).
#[utoipa::path(patch, path = "/api/v1/persons/{id}", tag = "registry", params(("id" = String, Path)), request_body = PersonPatch,
    responses((status = 200, body = PersonSummary), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<PersonPatch>,
) -> ApiResult<Json<PersonSummary>> {
    let g = p.grant(Action::PersonWrite)?;
    Ok(Json(
        s.store
            .update_person(&g, sensitive(&p).as_ref(), &Actor::from(&p), &id, patch)
            .await?,
    ))
}

/// Reveal the full ID card and/or phone number, for a stated purpose (audited).
#[utoipa::path(post, path = "/api/v1/persons/{id}/reveal", tag = "registry", params(("id" = String, Path)), request_body = RevealRequest,
    responses((status = 200, body = Revealed), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reveal_person(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RevealRequest>,
) -> ApiResult<Json<Revealed>> {
    let g = p.grant(Action::PersonReveal)?;
    Ok(Json(
        s.store
            .reveal_person(&g, &Actor::from(&p), &id, &req)
            .await?,
    ))
}

/// End the person's current residence (kept in the history).
#[utoipa::path(post, path = "/api/v1/persons/{id}/move-out", tag = "registry", params(("id" = String, Path)), request_body = MoveOut,
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn move_out(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(m): ApiJson<MoveOut>,
) -> ApiResult<StatusCode> {
    let g = p.grant(Action::HouseholdWrite)?;
    s.store.move_out(&g, &Actor::from(&p), &id, &m).await?;
    Ok(StatusCode::NO_CONTENT)
}
