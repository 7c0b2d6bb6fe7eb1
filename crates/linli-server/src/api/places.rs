//! The place tree.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::registry::geo::PlaceGeo;
use linli_store::registry::places::{NewPlace, Place, PlacePatch};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_places, create_place))
        .routes(routes!(get_place, update_place))
        .routes(routes!(get_place_geo, put_place_geo))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlaceQuery {
    /// Children of this place; without it, the top of the caller's area.
    pub parent_id: Option<String>,
    /// Only this kind (with no parent: every place of the kind in the caller's area).
    pub kind: Option<String>,
}

/// Places: children of a place, or the top of the caller's area.
#[utoipa::path(get, path = "/api/v1/places", tag = "registry", params(PlaceQuery),
    responses((status = 200, body = Vec<Place>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_places(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PlaceQuery>,
) -> ApiResult<Json<Vec<Place>>> {
    let g = p.grant(Action::PlaceRead)?;
    let parent = q.parent_id.as_deref().filter(|s| !s.is_empty());
    Ok(Json(
        s.store
            .places(&g, parent, q.kind.as_deref().filter(|s| !s.is_empty()))
            .await?,
    ))
}

/// One place.
#[utoipa::path(get, path = "/api/v1/places/{id}", tag = "registry", params(("id" = String, Path)),
    responses((status = 200, body = Place), (status = 404, body = ErrorBody)))]
pub async fn get_place(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Place>> {
    let g = p.grant(Action::PlaceRead)?;
    Ok(Json(s.store.place(&g, &id).await?))
}

/// Create a place under a parent (kind must fit the parent).
#[utoipa::path(post, path = "/api/v1/places", tag = "registry", request_body = NewPlace,
    responses((status = 201, body = Place), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_place(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewPlace>,
) -> ApiResult<(StatusCode, Json<Place>)> {
    let g = p.grant(Action::PlaceWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_place(&g, &Actor::from(&p), new).await?),
    ))
}

/// Rename or change a place's attributes.
#[utoipa::path(patch, path = "/api/v1/places/{id}", tag = "registry", params(("id" = String, Path)), request_body = PlacePatch,
    responses((status = 200, body = Place), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_place(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<PlacePatch>,
) -> ApiResult<Json<Place>> {
    let g = p.grant(Action::PlaceWrite)?;
    Ok(Json(
        s.store
            .update_place(&g, &Actor::from(&p), &id, patch)
            .await?,
    ))
}

/// The map area of a place (centre, radius, boundary polygon); `null` when it has none.
#[utoipa::path(get, path = "/api/v1/places/{id}/geo", tag = "registry", params(("id" = String, Path)),
    responses((status = 200, body = Option<PlaceGeo>), (status = 404, body = ErrorBody)))]
pub async fn get_place_geo(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Option<PlaceGeo>>> {
    let g = p.grant(Action::PlaceRead)?;
    Ok(Json(s.store.place_geo(&g, &id).await?))
}

/// Set the map area of a place (communities: where Open311 points are placed). Audited. The
/// area must lie inside its parent's, hold its children's and overlap no other place's (409,
/// naming the place in the way).
#[utoipa::path(put, path = "/api/v1/places/{id}/geo", tag = "registry", params(("id" = String, Path)),
    request_body = PlaceGeo,
    responses((status = 200, body = PlaceGeo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_place_geo(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(geo): ApiJson<PlaceGeo>,
) -> ApiResult<Json<PlaceGeo>> {
    let g = p.grant(Action::PlaceWrite)?;
    Ok(Json(
        s.store
            .set_place_geo(&g, &Actor::from(&p), &id, geo)
            .await?,
    ))
}
