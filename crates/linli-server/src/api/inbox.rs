//! A user's inbox, channels and follows. Everyone signed in has an inbox; each call only ever
//! touches the caller's own rows (someone else's notice is not found).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_store::notify::follows::{Channels, Follow};
use linli_store::notify::{InboxItem, render};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody, current_lang};
use crate::extract::{ApiJson, ApiQuery, Person};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbox))
        .routes(routes!(unread_count))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(get_channels, put_channels))
        .routes(routes!(list_follows, follow, unfollow))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// Only unread notices.
    pub unread: Option<bool>,
    /// Page: `next_before` of the previous page.
    pub before: Option<i64>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

/// An inbox entry with its text in the caller's language.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboxEntry {
    #[serde(flatten)]
    pub item: InboxItem,
    pub text: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboxPage {
    pub items: Vec<InboxEntry>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
    pub unread: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Count {
    pub count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Updated {
    pub updated: u64,
}

/// The caller's notices, newest first.
#[utoipa::path(get, path = "/api/v1/inbox", tag = "notifications", params(InboxQuery),
    responses((status = 200, body = InboxPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn inbox(
    State(s): State<AppState>,
    Person(p): Person,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> ApiResult<Json<InboxPage>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let items = s
        .store
        .inbox(&p, q.unread.unwrap_or(false), q.before, limit)
        .await?;
    let lang = current_lang();
    let next_before = if items.len() as i64 == limit {
        items.last().map(|i| i.created_at)
    } else {
        None
    };
    let items = items
        .into_iter()
        .map(|item| InboxEntry {
            text: render(lang, &item.key, &item.args),
            item,
        })
        .collect();
    Ok(Json(InboxPage {
        items,
        next_before,
        unread: s.store.inbox_unread(&p).await?,
    }))
}

/// How many unread notices the caller has.
#[utoipa::path(get, path = "/api/v1/inbox/unread-count", tag = "notifications",
    responses((status = 200, body = Count), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn unread_count(State(s): State<AppState>, Person(p): Person) -> ApiResult<Json<Count>> {
    Ok(Json(Count {
        count: s.store.inbox_unread(&p).await?,
    }))
}

/// Mark one of the caller's notices read.
#[utoipa::path(post, path = "/api/v1/inbox/{id}/read", tag = "notifications", params(("id" = String, Path)),
    responses((status = 200, body = Updated), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn mark_read(
    State(s): State<AppState>,
    Person(p): Person,
    Path(id): Path<String>,
) -> ApiResult<Json<Updated>> {
    Ok(Json(Updated {
        updated: s.store.inbox_mark_read(&p, Some(&id)).await?,
    }))
}

/// Mark all of the caller's notices read.
#[utoipa::path(post, path = "/api/v1/inbox/read-all", tag = "notifications",
    responses((status = 200, body = Updated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn mark_all_read(
    State(s): State<AppState>,
    Person(p): Person,
) -> ApiResult<Json<Updated>> {
    Ok(Json(Updated {
        updated: s.store.inbox_mark_read(&p, None).await?,
    }))
}

/// The caller's delivery channels.
#[utoipa::path(get, path = "/api/v1/me/channels", tag = "notifications",
    responses((status = 200, body = Channels), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_channels(
    State(s): State<AppState>,
    Person(p): Person,
) -> ApiResult<Json<Channels>> {
    Ok(Json(s.store.channels(&p).await?))
}

/// Set the caller's e-mail address, e-mail on/off and muted kinds.
#[utoipa::path(put, path = "/api/v1/me/channels", tag = "notifications", request_body = Channels,
    responses((status = 200, body = Channels), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_channels(
    State(s): State<AppState>,
    Person(p): Person,
    ApiJson(c): ApiJson<Channels>,
) -> ApiResult<Json<Channels>> {
    Ok(Json(s.store.set_channels(&p, c).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowTarget {
    /// e.g. `report`, `household`, `place`
    pub entity: String,
    pub entity_id: String,
}

/// What the caller follows.
#[utoipa::path(get, path = "/api/v1/follows", tag = "notifications",
    responses((status = 200, body = Vec<Follow>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_follows(
    State(s): State<AppState>,
    Person(p): Person,
) -> ApiResult<Json<Vec<Follow>>> {
    Ok(Json(s.store.follows(&p).await?))
}

/// Follow something the caller may see: its state changes reach the caller's inbox (and
/// e-mail, when enabled).
#[utoipa::path(post, path = "/api/v1/follows", tag = "notifications", request_body = FollowTarget,
    responses((status = 201, body = Follow), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn follow(
    State(s): State<AppState>,
    Person(p): Person,
    ApiJson(t): ApiJson<FollowTarget>,
) -> ApiResult<(StatusCode, Json<Follow>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.follow(&p, &t.entity, &t.entity_id).await?),
    ))
}

/// Stop following.
#[utoipa::path(delete, path = "/api/v1/follows", tag = "notifications", params(FollowTarget),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn unfollow(
    State(s): State<AppState>,
    Person(p): Person,
    ApiQuery(t): ApiQuery<FollowTarget>,
) -> ApiResult<StatusCode> {
    s.store.unfollow(&p, &t.entity, &t.entity_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
