//! REST API under `/api/v1`. One file per capability; each handler is small: authorize (get a
//! `Grant`), call the store, return JSON. OpenAPI comes from the `#[utoipa::path]` annotations.

pub mod access;
pub mod audit;
pub mod auth;
pub mod corrections;
pub mod households;
pub mod import_export;
pub mod inbox;
pub mod iot;
pub mod me;
pub mod orgs;
pub mod persons;
pub mod places;
pub mod reports;
pub mod roles;
pub mod users;
pub mod webhooks;

use linli_core::auth::{Action, Grant, Principal};

/// The grant for sensitive labels, if the caller has one anywhere.
pub fn sensitive(p: &Principal) -> Option<Grant> {
    p.grant(Action::SensitiveLabelRead).ok()
}
