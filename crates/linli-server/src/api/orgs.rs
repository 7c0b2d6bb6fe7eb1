//! Organisations and the label tree.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::registry::labels::{Label, NewLabel};
use linli_store::registry::orgs::{NewOrg, Org};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(get_org))
        .routes(routes!(list_labels, create_label))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgQuery {
    /// committee, property_company, department, social_org, merchant, enterprise
    pub kind: Option<String>,
}

/// Organisations in (or serving) the caller's area.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "registry", params(OrgQuery),
    responses((status = 200, body = Vec<Org>), (status = 403, body = ErrorBody)))]
pub async fn list_orgs(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<OrgQuery>,
) -> ApiResult<Json<Vec<Org>>> {
    let g = p.grant(Action::OrgRead)?;
    Ok(Json(
        s.store
            .orgs(&g, q.kind.as_deref().filter(|s| !s.is_empty()))
            .await?,
    ))
}

/// One organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{id}", tag = "registry", params(("id" = String, Path)),
    responses((status = 200, body = Org), (status = 404, body = ErrorBody)))]
pub async fn get_org(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Org>> {
    let g = p.grant(Action::OrgRead)?;
    Ok(Json(s.store.org(&g, &id).await?))
}

/// Create an organisation attached to a place.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "registry", request_body = NewOrg,
    responses((status = 201, body = Org), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_org(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewOrg>,
) -> ApiResult<(StatusCode, Json<Org>)> {
    let g = p.grant(Action::OrgWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_org(&g, &Actor::from(&p), new).await?),
    ))
}

/// The label tree (sensitive labels are listed for everyone; who carries them is not).
#[utoipa::path(get, path = "/api/v1/labels", tag = "registry", responses((status = 200, body = Vec<Label>)))]
pub async fn list_labels(State(s): State<AppState>, Auth(_p): Auth) -> ApiResult<Json<Vec<Label>>> {
    Ok(Json(s.store.labels().await?))
}

/// Add a label.
#[utoipa::path(post, path = "/api/v1/labels", tag = "registry", request_body = NewLabel,
    responses((status = 201, body = Label), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_label(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewLabel>,
) -> ApiResult<(StatusCode, Json<Label>)> {
    let g = p.grant(Action::LabelWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_label(&g, &Actor::from(&p), new).await?),
    ))
}
