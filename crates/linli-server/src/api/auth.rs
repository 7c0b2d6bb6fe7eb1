//! Sign-in, sign-out, the current user, password change, API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::{Action, Principal, Role};
use linli_core::{AppError, ErrorKind, password};
use linli_store::accounts::tokens::{CreatedToken, NewToken, TokenInfo};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth, Person, SESSION_COOKIE, client_ip, cookie};
use crate::limiter::account_key;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// Login name or mobile number.
    pub login: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: String,
    pub login: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// Every action the caller holds somewhere.
    pub capabilities: Vec<Action>,
    pub households: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub user: Me,
    /// Send as `X-CSRF-Token` on every state-changing request made with the session cookie.
    pub csrf_token: String,
}

pub fn me_of(p: &Principal, catalog: &linli_core::auth::Catalog) -> Me {
    Me {
        id: p.user_id().to_string(),
        login: p.login().to_string(),
        display_name: p.display_name().to_string(),
        roles: p.roles(),
        capabilities: catalog
            .actions()
            .iter()
            .map(|a| a.action)
            .filter(|a| p.can(*a))
            .collect(),
        households: p.own_households(),
    }
}

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie value is ASCII")
}

/// Sign in with login name or mobile number; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let ip = client_ip(&parts, &s.config.trusted_proxies);
    // Check and count in one step (see `Limiter::attempt`); taken back when no password failed.
    if let Err(secs) = s.ip_limiter.attempt(&ip).await {
        return Err(AppError::new(ErrorKind::TooManyRequests, "rate_limited")
            .arg("seconds", secs.to_string())
            .into());
    }
    let creds = match s.store.credentials(&req.login).await {
        Ok(c) => c,
        Err(e) => {
            s.ip_limiter.refund(&ip).await;
            return Err(e.into());
        }
    };
    let account_key = account_key(&req.login, creds.as_ref().map(|c| c.user_id.as_str()));
    if let Err(secs) = s.account_limiter.attempt(&account_key).await {
        s.ip_limiter.refund(&ip).await;
        return Err(
            AppError::new(ErrorKind::TooManyRequests, "auth.login_locked")
                .arg("seconds", secs.to_string())
                .into(),
        );
    }
    // Verify against a dummy hash when the account is unknown, so timing does not reveal it.
    let ok = match &creds {
        Some(c) => password::verify(&req.password, &c.password_hash) && !c.disabled,
        None => {
            password::verify(&req.password, &s.dummy_hash);
            false
        }
    };
    if !ok {
        // Both attempts stay counted as failures.
        metrics::counter!("linli_login_failures_total").increment(1);
        return Err(AppError::new(ErrorKind::Unauthorized, "auth.login_failed").into());
    }
    let creds = creds.expect("checked above");
    s.account_limiter.success(&account_key).await;
    s.ip_limiter.refund(&ip).await;
    let principal = s
        .store
        .principal(&creds.user_id)
        .await?
        .ok_or(AppError::new(ErrorKind::Unauthorized, "auth.login_failed"))?;
    // A fresh session id at every sign-in; an old cookie sent along is ended.
    if let Some(old) = cookie(&parts, SESSION_COOKIE) {
        s.store.delete_session(old).await?;
        s.auth_cache.remove(&crate::auth_cache::session_key(old));
    }
    let session = s.store.create_session(&creds.user_id).await?;
    let body = LoginResponse {
        user: me_of(&principal, s.store.catalog()),
        csrf_token: session.csrf,
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(
            &s,
            &session.token,
            linli_store::accounts::sessions::SESSION_TTL_MS / 1000,
        ),
    );
    Ok(resp)
}

/// Sign out (ends the session).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
) -> ApiResult<Response> {
    if let Some(token) = cookie(&parts, SESSION_COOKIE) {
        s.store.delete_session(token).await?;
        s.auth_cache.remove(&crate::auth_cache::session_key(token));
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, session_cookie(&s, "", 0));
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// The current user, roles and capabilities.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(s): State<AppState>, Auth(p): Auth) -> Json<Me> {
    Json(me_of(&p, s.store.catalog()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    pub old_password: String,
    pub new_password: String,
}

/// Change one's own password (ends all sessions of the account).
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn change_password(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    if p.token().is_some() {
        return Err(AppError::forbidden().into());
    }
    s.store
        .change_password(&p, &req.old_password, &req.new_password)
        .await?;
    s.auth_cache.remove_user(&p.user_id());
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API token (the secret is returned once).
#[utoipa::path(post, path = "/api/v1/auth/tokens", tag = "auth", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody)))]
pub async fn create_token(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_token(&p, req).await?),
    ))
}

/// The caller's own tokens.
#[utoipa::path(get, path = "/api/v1/auth/tokens", tag = "auth", responses((status = 200, body = Vec<TokenInfo>), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    Person(p): Person,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(s.store.tokens(&p).await?))
}

/// Revoke one of the caller's tokens.
#[utoipa::path(delete, path = "/api/v1/auth/tokens/{id}", tag = "auth", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Person(p): Person,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.store.revoke_token(&p, &id).await?;
    s.auth_cache.remove_user(&p.user_id());
    Ok(StatusCode::NO_CONTENT)
}
