//! The domain error: a stable machine code, an HTTP-ish kind, and arguments for the localized text.

use crate::i18n::{self, Lang};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Internal => 500,
        }
    }
}

/// A failure the caller can understand: `code` is stable (documented in docs/errors), the message
/// is produced per language from the Fluent files.
#[derive(Debug, Clone, PartialEq)]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub args: Vec<(&'static str, String)>,
    pub details: Option<serde_json::Value>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str) -> Self {
        AppError {
            kind,
            code,
            args: Vec::new(),
            details: None,
        }
    }
    pub fn bad_request(code: &'static str) -> Self {
        Self::new(ErrorKind::BadRequest, code)
    }
    pub fn not_found(code: &'static str) -> Self {
        Self::new(ErrorKind::NotFound, code)
    }
    pub fn forbidden() -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden")
    }
    pub fn conflict(code: &'static str) -> Self {
        Self::new(ErrorKind::Conflict, code)
    }
    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "internal")
    }
    pub fn arg(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.args.push((name, value.into()));
        self
    }
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
    /// A required-field error naming the field.
    pub fn required(field: &str) -> Self {
        Self::bad_request("validation.required").arg("field", field)
    }
    pub fn message(&self, lang: Lang) -> String {
        i18n::t_args(lang, self.code, &self.args)
    }
}

impl From<crate::auth::Forbidden> for AppError {
    fn from(_: crate::auth::Forbidden) -> Self {
        AppError::forbidden()
    }
}

impl From<crate::idcard::IdCardError> for AppError {
    fn from(e: crate::idcard::IdCardError) -> Self {
        AppError::bad_request(e.code())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code)
    }
}

impl std::error::Error for AppError {}
