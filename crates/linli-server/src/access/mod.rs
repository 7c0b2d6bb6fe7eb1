//! Gates, vehicles and visitor passes (门禁与访客): access records from face terminals and
//! vehicle barriers, fever and blacklist alarms, residents' vehicles, signed visitor passes.

pub mod probes;
pub mod qr_png;

pub mod record;

use linli_core::auth::{Action, ActionInfo, CatalogPart, Principal, RoleGrant};

use crate::manifest::{Api, Face, HomeTile, LiveKind, Module, NavEntry};
use crate::{api, web};

pub static MODULE: Module = Module {
    name: "access",
    catalog: CatalogPart {
        module: "access",
        actions: &[
            ActionInfo::plain(Action::AccessRead),
            ActionInfo::plain(Action::VisitorVerify),
        ],
        roles: &[],
        grants: &[
            RoleGrant {
                role: "grid_worker",
                actions: &[Action::AccessRead],
            },
            RoleGrant {
                role: "committee_staff",
                actions: &[Action::AccessRead],
            },
            RoleGrant {
                role: "property_staff",
                actions: &[Action::AccessRead, Action::VisitorVerify],
            },
            RoleGrant {
                role: "street_officer",
                actions: &[Action::AccessRead],
            },
        ],
    },
    migrations: linli_store::access::schema::MIGRATIONS,
    api: Some(Api {
        tags: &[("access", "Gates, access records, vehicles, visitor passes")],
        router: api::access::router,
    }),
    pages: Some(web::access::pages),
    nav: &[
        NavEntry {
            href: "/me/passes",
            label: "web-nav-passes",
            face: Face::Resident,
            visible: is_resident,
        },
        NavEntry {
            href: "/staff/access",
            label: "web-nav-access",
            face: Face::Staff,
            visible: reads_access,
        },
    ],
    tiles: &[HomeTile {
        href: "/me/passes",
        label: "web-nav-passes",
        icon: "🎫",
        visible: is_resident,
    }],
    demo: Some(|store| Box::pin(store.seed_access_demo())),
    record: &[&record::VEHICLES, &record::PASSES, &record::PASSAGES],
    live: &[LiveKind {
        prefix: "access",
        action: Action::AccessRead,
        area_roles_only: false,
        audience: None,
    }],
    locales: &["access"],
    probes: probes::PROBES,
    ..Module::NONE
};

fn is_resident(p: &Principal) -> bool {
    !p.own_households().is_empty()
}
fn reads_access(p: &Principal) -> bool {
    p.can(Action::AccessRead)
}
