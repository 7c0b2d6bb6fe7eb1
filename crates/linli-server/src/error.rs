//! The HTTP face of `AppError`: `{"code", "message", "details"}` in the caller's language.
//! The language and a request id live in a task-local set by the `context` middleware, so any
//! error produced while handling the request is localized without threading the language through;
//! so does the time zone (copied from the store's clock), for formatters of local times.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use linli_core::AppError;
use linli_core::i18n::Lang;

#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub lang: Lang,
    pub request_id: String,
    /// The store clock's time zone, for everything that shows or reads a local time.
    pub zone: linli_core::tz::Zone,
}

tokio::task_local! {
    pub static CTX: RequestCtx;
}

pub fn current_lang() -> Lang {
    CTX.try_with(|c| c.lang).unwrap_or_default()
}

/// The time zone of the request (the store's, `time_zone` in the configuration); the default
/// zone outside a request.
pub fn current_zone() -> linli_core::tz::Zone {
    CTX.try_with(|c| c.zone).unwrap_or_default()
}

pub fn current_request_id() -> String {
    CTX.try_with(|c| c.request_id.clone())
        .unwrap_or_else(|_| "-".into())
}

/// The error body every API error has.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine code, e.g. `registry.person.not_found`.
    pub code: String,
    /// Human message in the caller's language (zh-CN by default, en by `Accept-Language`).
    pub message: String,
    /// Machine-readable specifics (which field, which rows …), or null.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    pub request_id: String,
}

#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl From<linli_core::auth::Forbidden> for ApiError {
    fn from(_: linli_core::auth::Forbidden) -> Self {
        ApiError(AppError::forbidden())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut e = self.0;
        let request_id = current_request_id();
        if e.kind == linli_core::ErrorKind::Internal {
            // Never leak internals: the detail was logged where it happened, with this id.
            tracing::error!(request_id = %request_id, code = e.code, "internal error answered");
            e = AppError::internal().arg("request_id", request_id.clone());
        }
        let status =
            StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            code: e.code.to_string(),
            message: e.message(current_lang()),
            details: e.details.clone(),
            request_id,
        };
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(e);
        resp
    }
}
