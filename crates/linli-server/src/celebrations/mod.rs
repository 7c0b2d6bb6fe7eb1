//! 家有喜事 (celebrations): a household shares a happy event — a wedding, a birth, a long
//! life — and its neighbours congratulate; committee staff may hide a post. Seen only inside
//! the community.
//!
//! This is the example module of `docs/adding-a-module.md`: everything the platform needs from
//! it is declared below, and the rest lives in its own folders:
//! `crates/linli-core/src/celebrations/` (rules, the action), `crates/linli-store/src/celebrations/`
//! (tables, store functions, record section, demo), this folder (API, pages, how the record
//! shows it), `crates/linli-server/templates/celebrations/`, `crates/linli-core/locales/*/celebrations.ftl`
//! and `tests/it/celebrations.rs`.

pub mod api;
pub mod pages;
pub mod probes;
pub mod record;

use std::sync::Arc;

use linli_core::auth::{ActionInfo, CatalogPart, Principal, RoleGrant};
use linli_core::celebrations::CELEBRATION_MODERATE;
use linli_store::bus::BusEvent;
use linli_store::registry::places::community_prefix;

use crate::AppState;
use crate::manifest::{Api, Audience, BoxFuture, Face, HomeTile, LiveKind, Module, NavEntry};

pub static MODULE: Module = Module {
    name: "celebrations",
    catalog: CatalogPart {
        module: "celebrations",
        actions: &[ActionInfo::plain(CELEBRATION_MODERATE)],
        roles: &[],
        grants: &[RoleGrant {
            role: "committee_staff",
            actions: &[CELEBRATION_MODERATE],
        }],
    },
    migrations: linli_store::celebrations::schema::MIGRATIONS,
    api: Some(Api {
        tags: &[(
            "celebrations",
            "家有喜事: households share happy events; neighbours congratulate",
        )],
        router: api::router,
    }),
    pages: Some(pages::pages),
    nav: &[
        NavEntry {
            href: "/me/celebrations",
            label: "celebration-title",
            face: Face::Resident,
            visible: is_resident,
        },
        NavEntry {
            href: "/staff/celebrations",
            label: "celebration-title",
            face: Face::Staff,
            visible: moderates,
        },
    ],
    tiles: &[HomeTile {
        href: "/me/celebrations",
        label: "celebration-title",
        icon: "🎉",
        visible: is_resident,
    }],
    live: &[LiveKind {
        prefix: "celebration",
        action: CELEBRATION_MODERATE,
        area_roles_only: false,
        audience: Some(neighbours),
    }],
    demo: Some(|store| Box::pin(store.seed_celebrations_demo())),
    record: &[&record::CELEBRATIONS],
    locales: &["celebrations"],
    probes: probes::PROBES,
    ..Module::NONE
};

fn is_resident(p: &Principal) -> bool {
    !p.own_households().is_empty()
}

fn moderates(p: &Principal) -> bool {
    p.can(CELEBRATION_MODERATE)
}

/// Residents hear the celebrations of their own communities.
struct Neighbours {
    communities: Vec<String>,
}

impl Audience for Neighbours {
    fn hears<'a>(&'a self, e: &'a BusEvent) -> BoxFuture<'a, bool> {
        Box::pin(
            async move { e.kind.starts_with("celebration.") && self.communities.contains(&e.path) },
        )
    }
}

fn neighbours<'a>(s: &'a AppState, p: &'a Principal) -> BoxFuture<'a, Option<Arc<dyn Audience>>> {
    Box::pin(async move {
        let homes = s.store.own_homes(p).await.ok()?;
        let communities: Vec<String> = homes
            .iter()
            .filter_map(|(_, path)| community_prefix(path))
            .collect();
        (!communities.is_empty()).then(|| Arc::new(Neighbours { communities }) as Arc<dyn Audience>)
    })
}
