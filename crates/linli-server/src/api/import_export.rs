//! Spreadsheet import (template, dry-run preview, commit) and export (XLSX/CSV, masked by
//! default; full numbers only with the reveal right and a purpose, audited).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_core::import_rows::{HOUSEHOLD_HEADERS, template_rows};
use linli_core::{AppError, sheet};
use linli_store::audit::Actor;
use linli_store::registry::export::{Exported, Masking};
use linli_store::registry::import::ImportReport;

use crate::AppState;
use crate::api::sensitive;
use crate::error::{ApiResult, ErrorBody, current_lang};
use crate::extract::{ApiQuery, Auth, body_rejection};

/// Largest accepted upload (a 100,000-household CSV is about 25 MB).
pub const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(template))
        .routes(routes!(import_households).layer(DefaultBodyLimit::max(IMPORT_LIMIT)))
        .routes(routes!(export))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// xlsx (default) or csv
    pub format: Option<String>,
}

/// A table as a downloadable XLSX or CSV file (`format`), named `linli-{name}.{ext}`.
pub(crate) fn file_response(
    format: &str,
    name: &str,
    headers: &[&str],
    rows: &[Vec<String>],
) -> ApiResult<Response> {
    let (bytes, mime, ext) = match format {
        "csv" => (
            sheet::write_csv(headers, rows),
            "text/csv; charset=utf-8",
            "csv",
        ),
        "xlsx" => (
            sheet::write_xlsx(name, headers, rows).map_err(|e| {
                tracing::error!(error = %e, "xlsx writing failed");
                AppError::internal()
            })?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
        _ => {
            return Err(AppError::bad_request("validation.bad_value")
                .arg("field", "format")
                .into());
        }
    };
    let mut resp = bytes.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    let disposition = format!("attachment; filename=\"linli-{name}.{ext}\"");
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("ascii"),
    );
    Ok(resp)
}

/// The household import template (Chinese headers, two example households).
#[utoipa::path(get, path = "/api/v1/registry/import/template", tag = "registry", params(FormatQuery),
    responses((status = 200, description = "XLSX or CSV file", content_type = "application/octet-stream")))]
pub async fn template(Auth(p): Auth, ApiQuery(q): ApiQuery<FormatQuery>) -> ApiResult<Response> {
    p.grant(Action::RegistryImport)?;
    file_response(
        q.format.as_deref().unwrap_or("xlsx"),
        "households-template",
        &HOUSEHOLD_HEADERS,
        &template_rows(),
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Validate and preview only (default false).
    pub dry_run: Option<bool>,
}

/// Import households from an XLSX/XLS/CSV file (raw body or multipart field `file`).
/// Bad rows are listed with row number and reason; good rows are imported in one transaction;
/// importing the same file again changes nothing.
#[utoipa::path(post, path = "/api/v1/registry/import/households", tag = "registry", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn import_households(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    req: Request,
) -> ApiResult<Json<ImportReport>> {
    let g = p.grant(Action::RegistryImport)?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let bytes: Bytes = if is_multipart {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| AppError::bad_request("bad_request").arg("detail", e.body_text()))?;
        let mut found = None;
        while let Some(field) = mp.next_field().await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(linli_core::ErrorKind::PayloadTooLarge, "payload_too_large")
                    .arg("limit", format!("{} MB", IMPORT_LIMIT / 1_048_576))
            } else {
                AppError::bad_request("bad_request").arg("detail", e.body_text())
            }
        })? {
            if field.name() == Some("file") {
                found = Some(field.bytes().await.map_err(|e| {
                    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                        AppError::new(linli_core::ErrorKind::PayloadTooLarge, "payload_too_large")
                            .arg("limit", format!("{} MB", IMPORT_LIMIT / 1_048_576))
                    } else {
                        AppError::bad_request("bad_request").arg("detail", e.body_text())
                    }
                })?);
                break;
            }
        }
        found.ok_or(AppError::required("file"))?
    } else {
        Bytes::from_request(req, &())
            .await
            .map_err(|r| body_rejection(r, IMPORT_LIMIT))?
    };
    let sens = sensitive(&p);
    let report = s
        .store
        .import_households(
            &g,
            sens.as_ref(),
            &Actor::from(&p),
            &bytes,
            q.dry_run.unwrap_or(false),
            current_lang(),
        )
        .await?;
    Ok(Json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// xlsx (default) or csv
    pub format: Option<String>,
    /// Export full ID and phone numbers for this purpose (needs the reveal right; audited).
    pub reveal_purpose: Option<String>,
}

/// Export households or persons of the caller's area.
#[utoipa::path(get, path = "/api/v1/registry/export/{what}", tag = "registry",
    params(("what" = String, Path, description = "households or persons"), ExportQuery),
    responses((status = 200, description = "XLSX or CSV file", content_type = "application/octet-stream"), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(what): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let g = p.grant(Action::RegistryExport)?;
    let format = q.format.as_deref().unwrap_or("xlsx");
    if !matches!(format, "xlsx" | "csv") {
        return Err(AppError::bad_request("validation.bad_value")
            .arg("field", "format")
            .into());
    }
    let exported: Exported = match what.as_str() {
        "households" => s.store.export_households(&g).await?,
        "persons" => {
            let reveal = match q.reveal_purpose.as_deref().filter(|s| !s.trim().is_empty()) {
                Some(purpose) => Some((p.grant(Action::PersonReveal)?, purpose.to_string())),
                None => None,
            };
            let masking = match &reveal {
                Some((rg, purpose)) => Masking::Revealed { grant: rg, purpose },
                None => Masking::Masked,
            };
            s.store
                .export_persons(&g, sensitive(&p).as_ref(), &Actor::from(&p), masking)
                .await?
        }
        _ => return Err(AppError::not_found("not_found").into()),
    };
    file_response(format, &what, &exported.headers, &exported.rows)
}
