//! Reports (报事 / 报修 / 投诉): intake, duplicates and "me too", every transition of the state
//! machine through one action endpoint, list and detail (public view for residents, internal
//! notes for staff), photos, the routing catalogue and working-day calendar, and metrics with
//! CSV/XLSX export. Scope and visibility are decided in the store (`linli_store::reports`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use linli_core::AppError;
use linli_core::auth::Action;
use linli_core::i18n::Lang;
use linli_store::audit::Actor;
use linli_store::reports::Report;
use linli_store::reports::actions::ReportAction;
use linli_store::reports::catalogue::{
    CalendarInfo, CalendarYearInput, CalendarYearView, Category, RoutingRule, RoutingRuleInput,
};
use linli_store::reports::images::MAX_PHOTO_BYTES;
use linli_store::reports::intake::{Duplicate, DuplicateQuery, NewReport};
use linli_store::reports::metrics::{EXPORT_HEADERS, StatsQuery, StatsRow, StatsScope};
use linli_store::reports::queries::{PhotoMeta, ReportPage, ReportQuery, ReportView};
use linli_store::reports::repairs::Assignee;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody, current_lang};
use crate::extract::{ApiJson, ApiQuery, Auth, body_rejection};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reports, create_report))
        .routes(routes!(duplicates))
        .routes(routes!(report_stats))
        .routes(routes!(report_stats_export))
        .routes(routes!(grab_pool))
        .routes(routes!(get_report))
        .routes(routes!(assignees))
        .routes(routes!(act))
        .routes(routes!(me_too))
        .routes(routes!(upload_photo).layer(DefaultBodyLimit::max(MAX_PHOTO_BYTES + 1024)))
        .routes(routes!(get_photo))
        .routes(routes!(categories))
        .routes(routes!(list_rules, put_rule))
        .routes(routes!(calendar, put_calendar_year))
        .routes(routes!(calendar_year))
}

/// What the reporter sees after submitting: the report and the notice of the unit it goes to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedReport {
    pub report: Report,
    /// The routing catalogue's notice, in the caller's language.
    pub notice: Option<String>,
}

/// Submit a report: residents for their household in their community; staff on a resident's
/// behalf (代客, phone) or from patrol (`ReportCreate`); integrations with a token.
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", request_body = NewReport,
    responses((status = 201, body = CreatedReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewReport>,
) -> ApiResult<(StatusCode, Json<CreatedReport>)> {
    let c = s.store.create_report(&p, new).await?;
    let notice = match current_lang() {
        Lang::En => c.notice_en,
        _ => c.notice_zh,
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedReport {
            report: c.report,
            notice,
        }),
    ))
}

/// Reports the caller may see, newest first (filters: status, kind, category, unit, place,
/// overdue, mine, `assignee=me` (我的工单), created range; paged).
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportQuery),
    responses((status = 200, body = ReportPage), (status = 400, body = ErrorBody)))]
pub async fn list_reports(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<ReportPage>> {
    let v = s.store.report_viewer(&p).await?;
    Ok(Json(s.store.reports(&v, &q).await?))
}

/// Likely duplicates before submitting: same category, open, recent, at the same building or
/// nearby.
#[utoipa::path(get, path = "/api/v1/reports/duplicates", tag = "reports", params(DuplicateQuery),
    responses((status = 200, body = Vec<Duplicate>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn duplicates(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<DuplicateQuery>,
) -> ApiResult<Json<Vec<Duplicate>>> {
    Ok(Json(s.store.report_duplicates(&p, &q).await?))
}

/// One report with its events (internal notes for staff only), 吹哨 summons and photos.
#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports", params(("id" = String, Path)),
    responses((status = 200, body = ReportView), (status = 404, body = ErrorBody)))]
pub async fn get_report(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ReportView>> {
    let v = s.store.report_viewer(&p).await?;
    Ok(Json(s.store.report(&v, &id).await?))
}

/// Move a report: accept, reject, dispatch, sign, return, extend_request, extend, transfer,
/// escalate, whistle, summon_sign, summon_reply, contact, reply, review_pass, review_fail,
/// visit, reopen, moderate; repairs: assign (`assignee_user_id`), grab (抢单; a second grab is
/// a 409 `report.already_taken`), quote (`amount_fen` + `public_note`; the assignee or a
/// dispatcher), quote_accept / quote_decline (`amount_fen` and `quoted_at` of the quote the
/// resident was shown; another current quote is a 409 `report.quote_changed`). An action the
/// status does not allow is a 409 and changes nothing; send the `version` you read to make any
/// action conditional on it.
#[utoipa::path(post, path = "/api/v1/reports/{id}/actions", tag = "reports", params(("id" = String, Path)),
    request_body = ReportAction,
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn act(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(a): ApiJson<ReportAction>,
) -> ApiResult<Json<Report>> {
    Ok(Json(s.store.report_act(&p, &id, a).await?))
}

/// 待抢单: unassigned reports in grab mode of the units the caller works for, oldest first.
#[utoipa::path(get, path = "/api/v1/reports/grab-pool", tag = "reports",
    responses((status = 200, body = Vec<Report>)))]
pub async fn grab_pool(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Vec<Report>>> {
    Ok(Json(s.store.grab_pool(&p).await?))
}

/// The people of the report's unit it can be assigned to, with their open tasks; for those who
/// may assign it (dispatchers of the place, people of the unit).
#[utoipa::path(get, path = "/api/v1/reports/{id}/assignees", tag = "reports", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Assignee>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn assignees(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Assignee>>> {
    Ok(Json(s.store.report_assignees(&p, &id).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Supporters {
    pub supporters: i64,
}

/// "Me too" (我也遇到): support an open report of one's community instead of filing a duplicate.
#[utoipa::path(post, path = "/api/v1/reports/{id}/me-too", tag = "reports", params(("id" = String, Path)),
    responses((status = 200, body = Supporters), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn me_too(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Supporters>> {
    Ok(Json(Supporters {
        supporters: s.store.report_me_too(&p, &id).await?,
    }))
}

/// Attach a photo (raw JPEG, PNG or WebP body, at most 8 MB). The content is checked and
/// rewritten without EXIF/GPS and other metadata.
#[utoipa::path(post, path = "/api/v1/reports/{id}/photos", tag = "reports", params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = PhotoMeta), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_photo(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PhotoMeta>)> {
    let bytes = body.map_err(|r| body_rejection(r, MAX_PHOTO_BYTES))?;
    let meta = s
        .store
        .report_add_photo(&p, &s.config.data_dir, &id, &bytes)
        .await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// A photo of a report the caller may see.
#[utoipa::path(get, path = "/api/v1/reports/{id}/photos/{photo_id}", tag = "reports",
    params(("id" = String, Path), ("photo_id" = String, Path)),
    responses((status = 200, description = "The image", content_type = "image/jpeg"), (status = 404, body = ErrorBody)))]
pub async fn get_photo(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((id, photo_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = s.store.report_viewer(&p).await?;
    let (mime, bytes) = s
        .store
        .report_photo(&v, &s.config.data_dir, &id, &photo_id)
        .await?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}

/// What can be reported.
#[utoipa::path(get, path = "/api/v1/report-categories", tag = "reports",
    responses((status = 200, body = Vec<Category>)))]
pub async fn categories(
    State(s): State<AppState>,
    Auth(_p): Auth,
) -> ApiResult<Json<Vec<Category>>> {
    Ok(Json(s.store.report_categories().await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesQuery {
    /// Include retired versions (default false).
    pub all_versions: Option<bool>,
}

/// The routing catalogue (派单目录) of the caller's area.
#[utoipa::path(get, path = "/api/v1/routing-rules", tag = "reports", params(RulesQuery),
    responses((status = 200, body = Vec<RoutingRule>), (status = 403, body = ErrorBody)))]
pub async fn list_rules(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<RulesQuery>,
) -> ApiResult<Json<Vec<RoutingRule>>> {
    let g = p
        .grant(Action::RoutingAdmin)
        .or_else(|_| p.grant(Action::ReportDispatch))?;
    Ok(Json(
        s.store
            .routing_rules(&g, q.all_versions.unwrap_or(false))
            .await?,
    ))
}

/// Add a routing rule, or a new version of one (give its `rule_key`). Audited.
#[utoipa::path(post, path = "/api/v1/routing-rules", tag = "reports", request_body = RoutingRuleInput,
    responses((status = 201, body = RoutingRule), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(input): ApiJson<RoutingRuleInput>,
) -> ApiResult<(StatusCode, Json<RoutingRule>)> {
    let g = p.grant(Action::RoutingAdmin)?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.store
                .put_routing_rule(&g, &Actor::from(&p), input)
                .await?,
        ),
    ))
}

/// The working-day calendar: years with data, and a warning when the current or next year is
/// missing.
#[utoipa::path(get, path = "/api/v1/work-calendar", tag = "reports",
    responses((status = 200, body = CalendarInfo)))]
pub async fn calendar(State(s): State<AppState>, Auth(_p): Auth) -> ApiResult<Json<CalendarInfo>> {
    Ok(Json(s.store.calendar_info().await?))
}

/// One year of the working-day calendar: its source, days off and make-up working days.
#[utoipa::path(get, path = "/api/v1/work-calendar/{year}", tag = "reports", params(("year" = i32, Path)),
    responses((status = 200, body = CalendarYearView), (status = 404, body = ErrorBody)))]
pub async fn calendar_year(
    State(s): State<AppState>,
    Auth(_p): Auth,
    Path(year): Path<i32>,
) -> ApiResult<Json<CalendarYearView>> {
    s.store
        .calendar_years()
        .await?
        .into_iter()
        .find(|y| y.year == year)
        .map(Json)
        .ok_or_else(|| AppError::not_found("calendar.year_not_found").into())
}

/// Enter (or replace) a year of the calendar: holidays and make-up working days. Audited.
#[utoipa::path(post, path = "/api/v1/work-calendar", tag = "reports", request_body = CalendarYearInput,
    responses((status = 200, body = CalendarInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_calendar_year(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(input): ApiJson<CalendarYearInput>,
) -> ApiResult<Json<CalendarInfo>> {
    let g = p.grant(Action::RoutingAdmin)?;
    Ok(Json(
        s.store
            .put_calendar_year(&g, &Actor::from(&p), input)
            .await?,
    ))
}

/// Metrics per unit, category, area or month: 响应率, 解决率, 满意率, 按时办结率, 回退率, 重办率,
/// 延期率, average time per stage.
#[utoipa::path(get, path = "/api/v1/reports/stats", tag = "reports", params(StatsQuery),
    responses((status = 200, body = Vec<StatsRow>), (status = 403, body = ErrorBody)))]
pub async fn report_stats(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<Vec<StatsRow>>> {
    let scope = StatsScope::of(&p)?;
    Ok(Json(s.store.report_stats(&scope, &q).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsExportQuery {
    /// unit (default), category, area or month.
    pub by: Option<String>,
    pub place_id: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// xlsx (default) or csv
    pub format: Option<String>,
}

/// The metrics as a spreadsheet (XLSX or CSV).
#[utoipa::path(get, path = "/api/v1/reports/stats/export", tag = "reports", params(StatsExportQuery),
    responses((status = 200, description = "XLSX or CSV file", content_type = "application/octet-stream"), (status = 403, body = ErrorBody)))]
pub async fn report_stats_export(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<StatsExportQuery>,
) -> ApiResult<Response> {
    let scope = StatsScope::of(&p)?;
    let rows = s
        .store
        .report_stats(
            &scope,
            &StatsQuery {
                by: q.by,
                place_id: q.place_id,
                from: q.from,
                to: q.to,
            },
        )
        .await?;
    let rows: Vec<Vec<String>> = rows.iter().map(StatsRow::export_row).collect();
    crate::api::import_export::file_response(
        q.format.as_deref().unwrap_or("xlsx"),
        "report-stats",
        &EXPORT_HEADERS,
        &rows,
    )
}
