//! Open311 GeoReport v2 at `/open311/v2/` (<http://wiki.open311.org/GeoReport_v2>), with
//! mySociety's `servicerequestupdates` extension and `extended_attributes.detailed_status`.
//!
//! - `discovery`, `services`, `services/{code}`, `requests` (GET, POST), `requests/{id}`,
//!   `tokens/{token}`, `servicerequestupdates`; each as `.json` or `.xml`.
//! - Services are the report categories; their attributes are the intake options a category
//!   accepts (`title`, `anonymous`, and `public` except for complaints).
//! - `api_key` is a Linli API token; posting needs `report_create` in its area. Reading needs no
//!   key (published reports only); a key adds the token's `report_read` area and what its
//!   account filed.
//! - Location: `address_id` is a Linli place id (community, building, entrance or flat). Without
//!   it, an `address_string` naming places, else `lat`/`long` inside a community's map area
//!   (400 when the point is in no community), else the place the api_key is limited to (a
//!   community or below); otherwise the request is refused (400) asking for `address_id`.
//! - Contact fields (`email`, `first_name`, `last_name`, `phone`, `device_id`, `account_id`) are
//!   validated and stored sealed with the report (staff see them masked, Open311 readers never).
//! - Errors are a list of `{code, description}` with HTTP 400, 403, 404 (500 for internal).
//! - Cross-origin GET and POST are allowed here (browser clients on other sites): no cookies are
//!   read on these routes, the key travels as a parameter.

pub mod params;
pub mod xml;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use linli_core::auth::{Action, Grant, Principal};
use linli_core::i18n::{Lang, t};
use linli_core::{AppError, ErrorKind};
use linli_store::reports::catalogue::Category;
use linli_store::reports::contacts::NewContact;
use linli_store::reports::intake::NewReport;
use linli_store::reports::open311::{MAX_ROWS, Open311Filter, Open311Request, Open311Update};
use linli_store::reports::path_ids;

use crate::AppState;
use crate::error::current_lang;
use crate::manifest::Pages;
use params::{Params, iso};

/// The default and the widest window of `requests` and `servicerequestupdates` (spec: 90 days).
pub const WINDOW_MS: i64 = 90 * 86_400_000;

pub fn pages() -> Pages {
    Pages::new()
        .get("/open311/v2/{file}", root_get)
        .post("/open311/v2/{file}", post_request)
        .options("/open311/v2/{file}", preflight)
        .get("/open311/v2/services/{file}", service_definition)
        .options("/open311/v2/services/{file}", preflight)
        .get("/open311/v2/requests/{file}", one_request)
        .options("/open311/v2/requests/{file}", preflight)
        .get("/open311/v2/tokens/{file}", token)
        .options("/open311/v2/tokens/{file}", preflight)
        .layer(middleware::from_fn(cors))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// An Open311 answer: the value and the root element it gets in XML.
struct Out {
    fmt: Format,
    status: StatusCode,
    root: &'static str,
    value: Value,
}

impl IntoResponse for Out {
    fn into_response(self) -> Response {
        let (body, ct) = match self.fmt {
            Format::Json => (self.value.to_string(), "application/json; charset=utf-8"),
            Format::Xml => (
                xml::document(self.root, &self.value),
                "text/xml; charset=utf-8",
            ),
        };
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        resp
    }
}

/// An error answered as the spec's list of `{code, description}`.
struct Fail(Format, AppError);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let Fail(fmt, e) = self;
        let status = match e.kind {
            ErrorKind::BadRequest | ErrorKind::Conflict | ErrorKind::PayloadTooLarge => 400,
            ErrorKind::Unauthorized | ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Internal => 500,
        };
        let description = if e.kind == ErrorKind::Internal {
            tracing::error!(code = e.code, "internal error answered on Open311");
            AppError::internal()
                .arg("request_id", crate::error::current_request_id())
                .message(current_lang())
        } else {
            e.message(current_lang())
        };
        let mut resp = Out {
            fmt,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            root: "errors",
            value: json!([{ "code": status, "description": description }]),
        }
        .into_response();
        resp.extensions_mut().insert(e);
        resp
    }
}

/// An error for a request under `/open311/` answered outside its handlers (a refusal by a layer
/// that runs first): the spec's list of `{code, description}`, in XML when the path asks for it.
pub fn error_response(path: &str, e: AppError) -> Response {
    let fmt = if path.ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    };
    Fail(fmt, e).into_response()
}

type Answer = Result<Out, Fail>;

/// `services.json` → (`services`, JSON). An unknown format is a 404 (in JSON).
fn split(file: &str) -> Result<(&str, Format), Fail> {
    match file.rsplit_once('.') {
        Some((name, "json")) => Ok((name, Format::Json)),
        Some((name, "xml")) => Ok((name, Format::Xml)),
        _ => Err(Fail(
            Format::Json,
            AppError::not_found("open311.bad_format"),
        )),
    }
}

fn ok(fmt: Format, root: &'static str, value: Value) -> Answer {
    Ok(Out {
        fmt,
        status: StatusCode::OK,
        root,
        value,
    })
}

async fn cors(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Accept, Accept-Language"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// The caller behind an optional `api_key`: none, or the token's principal. A key that is
/// given but unknown, expired or revoked is refused (403).
async fn caller(s: &AppState, p: &Params, fmt: Format) -> Result<Option<Principal>, Fail> {
    let Some(key) = p.get("api_key") else {
        return Ok(None);
    };
    match s.store.token_principal(key).await {
        Ok(Some(principal)) => Ok(Some(principal)),
        Ok(None) => Err(Fail(
            fmt,
            AppError::new(ErrorKind::Forbidden, "open311.api_key_invalid"),
        )),
        Err(e) => Err(Fail(fmt, e)),
    }
}

fn query_params(uri: &Uri) -> Params {
    Params::parse(&[uri.query().unwrap_or("").as_bytes()])
}

async fn root_get(
    State(s): State<AppState>,
    Path(file): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let (name, fmt) = split(&file)?;
    let p = query_params(&uri);
    match name {
        "discovery" => ok(fmt, "discovery", discovery(&headers)),
        "services" => services(&s, fmt).await,
        "requests" => list_requests(&s, fmt, &p).await,
        "servicerequestupdates" => updates(&s, fmt, &p).await,
        _ => Err(Fail(fmt, AppError::not_found("not_found"))),
    }
}

fn discovery(headers: &HeaderMap) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|s| *s == "https")
        .unwrap_or("http");
    let lang = current_lang();
    json!({
        "changeset": iso(CHANGESET_MS),
        "contact": t(lang, "open311-contact"),
        "key_service": t(lang, "open311-key_service"),
        "endpoints": [{
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": format!("{scheme}://{host}/open311/v2"),
            "changeset": iso(CHANGESET_MS),
            "type": "production",
            "formats": ["application/json", "text/xml"],
        }],
    })
}

/// When this endpoint's interface last changed (2026-11-25T00:00:00+08:00), written like every
/// Open311 time with the configured zone's offset.
const CHANGESET_MS: i64 = 1_795_536_000_000;

fn kind_label(lang: Lang, kind: &str) -> String {
    t(lang, &format!("open311-kind-{kind}"))
}

fn category_name(lang: Lang, c: &Category) -> String {
    match lang {
        Lang::En => c.name_en.clone(),
        _ => c.name_zh.clone(),
    }
}

fn service(lang: Lang, c: &Category) -> Value {
    json!({
        "service_code": c.code,
        "service_name": category_name(lang, c),
        "description": kind_label(lang, &c.kind),
        "metadata": true,
        "type": "realtime",
        "keywords": c.kind,
        "group": kind_label(lang, &c.kind),
    })
}

async fn services(s: &AppState, fmt: Format) -> Answer {
    let lang = current_lang();
    let cats = s
        .store
        .report_categories()
        .await
        .map_err(|e| Fail(fmt, e))?;
    ok(
        fmt,
        "services",
        Value::Array(cats.iter().map(|c| service(lang, c)).collect()),
    )
}

/// The attributes a category accepts: `(code, datatype, values)`. They map onto the intake's
/// own options, so every one of them changes the report that is created.
fn attribute_codes(kind: &str) -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    let mut a = vec![("title", "string", &[][..])];
    if kind != "complaint" {
        a.push(("public", "singlevaluelist", &["yes", "no"][..]));
    }
    a.push(("anonymous", "singlevaluelist", &["yes", "no"][..]));
    a
}

fn definition(lang: Lang, c: &Category) -> Value {
    let attributes: Vec<Value> = attribute_codes(&c.kind)
        .into_iter()
        .enumerate()
        .map(|(i, (code, datatype, values))| {
            json!({
                "variable": true,
                "code": code,
                "datatype": datatype,
                "required": false,
                "datatype_description": t(lang, &format!("open311-attr-{code}-format")),
                "order": i + 1,
                "description": t(lang, &format!("open311-attr-{code}")),
                "values": values.iter().map(|v| json!({
                    "key": v,
                    "name": t(lang, &format!("open311-value-{v}")),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "service_code": c.code, "attributes": attributes })
}

async fn service_definition(State(s): State<AppState>, Path(file): Path<String>) -> Answer {
    let (code, fmt) = split(&file)?;
    let lang = current_lang();
    let cats = s
        .store
        .report_categories()
        .await
        .map_err(|e| Fail(fmt, e))?;
    let c = cats.iter().find(|c| c.code == code).ok_or_else(|| {
        Fail(
            fmt,
            AppError::not_found("open311.service_not_found").arg("code", code),
        )
    })?;
    ok(fmt, "service_definition", definition(lang, c))
}

/// One report in the spec's shape, with mySociety's `extended_attributes`.
fn request_value(lang: Lang, cats: &[Category], r: &Open311Request) -> Value {
    let rep = &r.report;
    let service_name = cats
        .iter()
        .find(|c| c.code == rep.category)
        .map(|c| category_name(lang, c))
        .unwrap_or_else(|| rep.category.clone());
    json!({
        "service_request_id": rep.id,
        "status": rep.open311_status,
        "status_notes": r.status_notes,
        "service_name": service_name,
        "service_code": rep.category,
        "description": rep.description,
        "agency_responsible": rep.unit_name,
        "service_notice": r.notice.as_ref().map(|(zh, en)| match lang {
            Lang::En => en.clone(),
            _ => zh.clone(),
        }).filter(|n| !n.is_empty()),
        "requested_datetime": iso(rep.created_at),
        "updated_datetime": iso(rep.updated_at),
        "expected_datetime": rep.resolve_by.map(iso),
        "address": r.address,
        "address_id": r.address_id,
        "zipcode": Value::Null,
        "lat": rep.lat,
        "long": rep.lon,
        "media_url": Value::Null,
        "extended_attributes": {
            "detailed_status": rep.extended_status,
            "title": rep.title,
        },
    })
}

/// The window of `requests` / `servicerequestupdates`: the last 90 days by default; one end
/// given, 90 days from it; both given, at most 90 days apart.
fn window(s: &AppState, p: &Params, fmt: Format) -> Result<(i64, i64), Fail> {
    let start = p.date("start_date").map_err(|e| Fail(fmt, e))?;
    let end = p.date("end_date").map_err(|e| Fail(fmt, e))?;
    let (start, end) = match (start, end) {
        (None, None) => {
            let now = s.store.now_ms();
            (now - WINDOW_MS, now)
        }
        (Some(a), None) => (a, a + WINDOW_MS),
        (None, Some(b)) => (b - WINDOW_MS, b),
        (Some(a), Some(b)) => (a, b),
    };
    if end < start {
        return Err(Fail(
            fmt,
            AppError::bad_request("open311.bad_range").arg("field", "end_date"),
        ));
    }
    if end - start > WINDOW_MS {
        return Err(Fail(fmt, AppError::bad_request("open311.range_too_long")));
    }
    Ok((start, end))
}

async fn list_requests(s: &AppState, fmt: Format, p: &Params) -> Answer {
    let lang = current_lang();
    let principal = caller(s, p, fmt).await?;
    let ids = p.list("service_request_id");
    let mut f = Open311Filter {
        limit: MAX_ROWS,
        ..Default::default()
    };
    if ids.is_empty() {
        let statuses = p.list("status");
        if let Some(bad) = statuses.iter().find(|s| *s != "open" && *s != "closed") {
            return Err(Fail(
                fmt,
                AppError::bad_request("open311.bad_status").arg("value", bad.clone()),
            ));
        }
        let (start, end) = window(s, p, fmt)?;
        f.statuses = statuses;
        f.service_codes = p.list("service_code");
        f.start = Some(start);
        f.end = Some(end);
    } else {
        // "This overrides all other arguments."
        if ids.len() as i64 > MAX_ROWS {
            return Err(Fail(
                fmt,
                AppError::bad_request("validation.bad_value").arg("field", "service_request_id"),
            ));
        }
        f.ids = ids;
    }
    let cats = s
        .store
        .report_categories()
        .await
        .map_err(|e| Fail(fmt, e))?;
    let rows = s
        .store
        .open311_requests(principal.as_ref(), &f)
        .await
        .map_err(|e| Fail(fmt, e))?;
    ok(
        fmt,
        "service_requests",
        Value::Array(rows.iter().map(|r| request_value(lang, &cats, r)).collect()),
    )
}

async fn one_request(State(s): State<AppState>, Path(file): Path<String>, uri: Uri) -> Answer {
    let (id, fmt) = split(&file)?;
    let p = query_params(&uri);
    let principal = caller(&s, &p, fmt).await?;
    let lang = current_lang();
    let r = s
        .store
        .open311_request(principal.as_ref(), id)
        .await
        .map_err(|e| Fail(fmt, e))?
        .ok_or_else(|| Fail(fmt, AppError::not_found("open311.request_not_found")))?;
    let cats = s
        .store
        .report_categories()
        .await
        .map_err(|e| Fail(fmt, e))?;
    ok(
        fmt,
        "service_requests",
        json!([request_value(lang, &cats, &r)]),
    )
}

async fn token(State(s): State<AppState>, Path(file): Path<String>, uri: Uri) -> Answer {
    let (tok, fmt) = split(&file)?;
    let principal = caller(&s, &query_params(&uri), fmt).await?;
    let id = s
        .store
        .open311_token(principal.as_ref(), tok)
        .await
        .map_err(|e| Fail(fmt, e))?
        .ok_or_else(|| Fail(fmt, AppError::not_found("open311.token_not_found")))?;
    ok(
        fmt,
        "service_requests",
        json!([{ "service_request_id": id, "token": tok }]),
    )
}

fn update_value(u: &Open311Update) -> Value {
    json!({
        "update_id": u.update_id,
        "service_request_id": u.service_request_id,
        "status": u.extended_status.to_ascii_lowercase().replace("unable_to_fix", "no_further_action"),
        "updated_datetime": iso(u.at),
        "description": u.description.clone().unwrap_or_default(),
        "media_url": "",
        "external_status_code": u.to_status,
    })
}

async fn updates(s: &AppState, fmt: Format, p: &Params) -> Answer {
    let principal = caller(s, p, fmt).await?;
    let (start, end) = window(s, p, fmt)?;
    let rows = s
        .store
        .open311_updates(principal.as_ref(), start, end, MAX_ROWS)
        .await
        .map_err(|e| Fail(fmt, e))?;
    ok(
        fmt,
        "service_request_updates",
        Value::Array(rows.iter().map(update_value).collect()),
    )
}

/// The community a posted point lies in (see `linli_store::registry::geo`), when it must be
/// inside the key's `report_create` area. A point in no community is a 400 — unless no
/// community of the key's area has a map area yet, when the caller falls back to the key's own
/// place (installations that have not entered map areas keep working as before).
async fn point_community(
    s: &AppState,
    grant: &Grant,
    (lat, lon): (f64, f64),
) -> Result<Option<String>, AppError> {
    match s.store.community_at(lat, lon).await? {
        Some(hit) if grant.allows(Action::ReportCreate, &hit.path) => Ok(Some(hit.place_id)),
        Some(hit) => {
            Err(AppError::bad_request("open311.point_outside_area").arg("community", hit.name))
        }
        None if s
            .store
            .communities_have_geo(grant.area(Action::ReportCreate))
            .await? =>
        {
            Err(AppError::bad_request("open311.point_in_no_community")
                .arg("lat", lat.to_string())
                .arg("long", lon.to_string()))
        }
        None => Ok(None),
    }
}

/// `POST requests`: create a report through the api_key's account (channel `open311`).
async fn post_request(
    State(s): State<AppState>,
    Path(file): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (name, fmt) = split(&file)?;
    if name != "requests" {
        return Err(Fail(fmt, AppError::not_found("not_found")));
    }
    let fail = |e: AppError| Fail(fmt, e);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(fail(AppError::bad_request("open311.form_required")));
    }
    let p = Params::parse(&[uri.query().unwrap_or("").as_bytes(), &body]);
    let Some(_) = p.get("api_key") else {
        return Err(fail(AppError::new(
            ErrorKind::Forbidden,
            "open311.api_key_missing",
        )));
    };
    let principal = caller(&s, &p, fmt).await?.ok_or_else(|| {
        fail(AppError::new(
            ErrorKind::Forbidden,
            "open311.api_key_invalid",
        ))
    })?;
    let grant = principal.grant(Action::ReportCreate).map_err(|_| {
        fail(AppError::new(
            ErrorKind::Forbidden,
            "open311.api_key_forbidden",
        ))
    })?;
    let code = p
        .get("service_code")
        .ok_or_else(|| fail(AppError::required("service_code")))?;
    let cat = s.store.report_category(code).await.map_err(fail)?;

    // Attributes: only the ones the service definition lists, with their values.
    let allowed = attribute_codes(&cat.kind);
    let mut title = None;
    let mut public = false;
    let mut anonymous = false;
    for (code, values) in &p.attributes {
        let Some((_, datatype, keys)) = allowed.iter().find(|(c, _, _)| c == code) else {
            return Err(fail(
                AppError::bad_request("open311.unknown_attribute").arg("code", code.clone()),
            ));
        };
        let v = values.last().cloned().unwrap_or_default();
        if *datatype == "singlevaluelist" && (values.len() > 1 || !keys.contains(&v.as_str())) {
            return Err(fail(
                AppError::bad_request("open311.bad_attribute_value").arg("code", code.clone()),
            ));
        }
        match code.as_str() {
            "title" => title = Some(v),
            "public" => public = v == "yes",
            "anonymous" => anonymous = v == "yes",
            _ => {}
        }
    }

    // Location.
    let lat = p.float("lat", 90.0).map_err(fail)?;
    let lon = p.float("long", 180.0).map_err(fail)?;
    if lat.is_some() != lon.is_some() {
        return Err(fail(
            AppError::bad_request("validation.bad_value")
                .arg("field", if lat.is_some() { "long" } else { "lat" }),
        ));
    }
    let address_string = p.get("address_string");
    let place_id = match p.get("address_id") {
        Some(id) => id.to_string(),
        None if lat.is_none() && address_string.is_none() => {
            return Err(fail(AppError::bad_request("open311.location_required")));
        }
        None => {
            // The place the address names, else the community the point lies in, else the
            // place the key is limited to when that is a community or below.
            let named = match address_string {
                Some(a) => s
                    .store
                    .open311_resolve_address(grant.area(Action::ReportCreate), a)
                    .await
                    .map_err(fail)?,
                None => None,
            };
            let located = match (&named, lat.zip(lon)) {
                (None, Some(point)) => point_community(&s, &grant, point).await.map_err(fail)?,
                _ => None,
            };
            let limit = principal.token().as_ref().map(|t| path_ids(&t.prefix));
            match (named.or(located), limit) {
                (Some(id), _) => id,
                (None, Some(ids)) if ids.len() >= 4 => ids.last().cloned().unwrap_or_default(),
                _ => return Err(fail(AppError::bad_request("open311.address_id_required"))),
            }
        }
    };
    let contact = NewContact {
        first_name: p.get("first_name").map(str::to_string),
        last_name: p.get("last_name").map(str::to_string),
        email: p.get("email").map(str::to_string),
        phone: p.get("phone").map(str::to_string),
        device_id: p.get("device_id").map(str::to_string),
        account_id: p.get("account_id").map(str::to_string),
    };

    // The description, with the address as given and the photo link, if any.
    let mut description = p
        .get("description")
        .ok_or_else(|| fail(AppError::required("description")))?
        .to_string();
    if let Some(a) = address_string {
        description.push_str(&format!(
            "\n\n{}: {a}",
            t(current_lang(), "open311-address")
        ));
    }
    if let Some(url) = p.get("media_url") {
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 1000 {
            return Err(fail(
                AppError::bad_request("validation.bad_value").arg("field", "media_url"),
            ));
        }
        description.push_str(&format!(
            "\n\n{}: {url}",
            t(current_lang(), "open311-photo")
        ));
    }

    let created = s
        .store
        .create_report_with_contact(
            &principal,
            NewReport {
                category: cat.code.clone(),
                title,
                description,
                place_id: Some(place_id),
                lat,
                lon,
                anonymous,
                public,
                channel: Some("open311".into()),
                ..Default::default()
            },
            Some(&contact),
        )
        .await
        .map_err(fail)?;
    metrics::counter!("linli_open311_requests_created_total").increment(1);
    let notice = match current_lang() {
        Lang::En => created.notice_en,
        _ => created.notice_zh,
    }
    .filter(|n| !n.is_empty());
    ok(
        fmt,
        "service_requests",
        json!([{
            "service_request_id": created.report.id,
            "service_notice": notice,
            "account_id": p.get("account_id"),
        }]),
    )
}
