//! The audit log.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_store::audit::{AuditFilter, AuditRecord, VerifyReport};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// Audit entries about the caller's area, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditFilter),
    responses((status = 200, body = Vec<AuditRecord>), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(f): ApiQuery<AuditFilter>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    let g = p.grant(Action::AuditRead)?;
    Ok(Json(s.store.audit_list(&g, &f).await?))
}

/// Walk the hash chain and report the first broken link (whole-tree auditors only).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyReport), (status = 403, body = ErrorBody)))]
pub async fn verify_audit(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<VerifyReport>> {
    let g = p.grant(Action::AuditRead)?;
    let scope = g.scope(Action::AuditRead)?;
    if !scope.is_everywhere() {
        let root_ok = scope.prefixes().iter().any(|x| x.matches('/').count() <= 2);
        if !root_ok {
            return Err(linli_core::AppError::forbidden().into());
        }
    }
    Ok(Json(s.store.audit_verify().await?))
}
