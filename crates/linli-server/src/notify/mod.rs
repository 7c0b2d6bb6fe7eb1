//! Notifications: every user's inbox (live, with an unread badge), follows, the e-mail channel,
//! and outbound webhooks of an area with their delivery log.

pub mod probes;

use linli_core::auth::{Action, ActionInfo, CatalogPart, Principal, RoleGrant};

use crate::manifest::{Api, Face, HomeTile, Module, NavEntry, Pages};
use crate::{api, web};

pub static MODULE: Module = Module {
    name: "notify",
    catalog: CatalogPart {
        module: "notify",
        actions: &[ActionInfo::plain(Action::WebhookAdmin)],
        roles: &[],
        grants: &[
            RoleGrant {
                role: "committee_staff",
                actions: &[Action::WebhookAdmin],
            },
            RoleGrant {
                role: "street_officer",
                actions: &[Action::WebhookAdmin],
            },
        ],
    },
    migrations: linli_store::notify::schema::MIGRATIONS,
    api: Some(Api {
        tags: &[(
            "notifications",
            "Inbox, follows, e-mail channel, outbound webhooks",
        )],
        router: api_router,
    }),
    pages: Some(pages),
    nav: &[
        NavEntry {
            href: "/inbox",
            label: "inbox-title",
            face: Face::Staff,
            visible: everyone,
        },
        NavEntry {
            href: "/admin/webhooks",
            label: "web-nav-webhooks",
            face: Face::Admin,
            visible: can_admin_webhooks,
        },
    ],
    tiles: &[HomeTile {
        href: "/inbox",
        label: "inbox-title",
        icon: "✉️",
        visible: everyone,
    }],
    locales: &["notify"],
    probes: probes::PROBES,
    ..Module::NONE
};

fn api_router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(api::inbox::router())
        .merge(api::webhooks::router())
}

fn pages() -> Pages {
    web::inbox::pages().merge(web::webhooks::pages())
}

fn everyone(_: &Principal) -> bool {
    true
}
fn can_admin_webhooks(p: &Principal) -> bool {
    p.can(Action::WebhookAdmin)
}
