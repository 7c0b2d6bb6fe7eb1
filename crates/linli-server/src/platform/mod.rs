//! The platform itself: accounts, sessions and API tokens, roles (templates and custom roles),
//! the audit log. Its catalogue part declares the built-in role templates every module adds to.

pub mod probes;

use linli_core::auth::{Action, KERNEL, Principal};

use std::time::Duration;

use crate::manifest::{Api, Face, Job, Module, NavEntry, Pages};
use crate::{api, web};

pub static MODULE: Module = Module {
    name: "platform",
    catalog: KERNEL,
    migrations: linli_store::migrations::PLATFORM,
    api: Some(Api {
        tags: &[
            ("auth", "Sign-in, sessions, API tokens"),
            ("accounts", "Accounts, role bindings, roles"),
            ("audit", "Audit log"),
        ],
        router: api_router,
    }),
    pages: Some(pages),
    nav: &[
        NavEntry {
            href: "/staff",
            label: "web-nav-workbench",
            face: Face::Staff,
            visible: is_staff,
        },
        NavEntry {
            href: "/admin/users",
            label: "web-nav-users",
            face: Face::Admin,
            visible: can_admin_users,
        },
        NavEntry {
            href: "/admin/roles",
            label: "web-nav-roles",
            face: Face::Admin,
            visible: can_see_roles,
        },
        NavEntry {
            href: "/admin/audit",
            label: "web-nav-audit",
            face: Face::Admin,
            visible: can_read_audit,
        },
    ],
    locales: &["web", "errors"],
    probes: probes::PROBES,
    // Old one-time form tokens and finished login throttling entries go.
    jobs: &[Job {
        name: "shared-state-housekeeping",
        every: Duration::from_secs(600),
        run: |store| {
            Box::pin(async move {
                if let Err(e) = store
                    .purge_shared_state(crate::limiter::ACCOUNT_POLICY.window_ms)
                    .await
                {
                    tracing::warn!(error = %e, "purging shared state");
                }
            })
        },
    }],
    ..Module::NONE
};

fn api_router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(api::auth::router())
        .merge(api::users::router())
        .merge(api::roles::router())
        .merge(api::audit::router())
}

fn pages() -> Pages {
    web::account::pages()
        .merge(web::workbench::pages())
        .merge(web::admin::pages())
        .merge(web::roles::pages())
}

fn is_staff(p: &Principal) -> bool {
    p.is_staff()
}

fn can_admin_users(p: &Principal) -> bool {
    p.can(Action::UserAdmin)
}

fn can_see_roles(p: &Principal) -> bool {
    p.can(Action::RoleAdmin) || p.can(Action::UserAdmin)
}

fn can_read_audit(p: &Principal) -> bool {
    p.can(Action::AuditRead)
}
