//! 一户一表: the place tree, organisations, households and persons, labels, Excel import and
//! export, residents' own data and their correction requests.

pub mod probes;

use linli_core::auth::{Action, ActionInfo, CatalogPart, Principal, RoleGrant};

use linli_core::{AppResult, BoxFuture};
use linli_store::Store;

use crate::manifest::{Api, Face, HomeTile, LiveKind, Measure, Module, NavEntry, Pages};
use crate::{api, web};

pub static MODULE: Module = Module {
    name: "registry",
    catalog: CatalogPart {
        module: "registry",
        actions: &[
            ActionInfo::plain(Action::PlaceRead),
            ActionInfo::plain(Action::PlaceWrite),
            ActionInfo::plain(Action::OrgRead),
            ActionInfo::plain(Action::OrgWrite),
            ActionInfo::plain(Action::HouseholdRead),
            ActionInfo::plain(Action::HouseholdWrite),
            ActionInfo::plain(Action::PersonRead),
            ActionInfo::plain(Action::PersonWrite),
            ActionInfo::sensitive(Action::PersonReveal),
            ActionInfo::sensitive(Action::SensitiveLabelRead),
            ActionInfo::plain(Action::LabelWrite),
            ActionInfo::plain(Action::RegistryImport),
            ActionInfo::sensitive(Action::RegistryExport),
            ActionInfo::plain(Action::CorrectionReview),
        ],
        roles: &[],
        grants: &[
            RoleGrant {
                role: "grid_worker",
                actions: &[
                    Action::PlaceRead,
                    Action::OrgRead,
                    Action::HouseholdRead,
                    Action::HouseholdWrite,
                    Action::PersonRead,
                    Action::PersonWrite,
                    Action::PersonReveal,
                    Action::SensitiveLabelRead,
                ],
            },
            RoleGrant {
                role: "committee_staff",
                actions: &[
                    Action::PlaceRead,
                    Action::PlaceWrite,
                    Action::OrgRead,
                    Action::HouseholdRead,
                    Action::HouseholdWrite,
                    Action::PersonRead,
                    Action::PersonWrite,
                    Action::PersonReveal,
                    Action::SensitiveLabelRead,
                    Action::RegistryImport,
                    Action::RegistryExport,
                    Action::CorrectionReview,
                ],
            },
            // Property staff (technicians included) see residents masked: no full ID numbers.
            // They reach the reporter and household of their work orders through the report.
            RoleGrant {
                role: "property_staff",
                actions: &[
                    Action::PlaceRead,
                    Action::OrgRead,
                    Action::HouseholdRead,
                    Action::PersonRead,
                ],
            },
            RoleGrant {
                role: "department_officer",
                actions: &[
                    Action::PlaceRead,
                    Action::OrgRead,
                    Action::HouseholdRead,
                    Action::PersonRead,
                ],
            },
            RoleGrant {
                role: "street_officer",
                actions: &[
                    Action::PlaceRead,
                    Action::PlaceWrite,
                    Action::OrgRead,
                    Action::OrgWrite,
                    Action::HouseholdRead,
                    Action::PersonRead,
                    Action::SensitiveLabelRead,
                    Action::RegistryExport,
                    Action::CorrectionReview,
                ],
            },
            RoleGrant {
                role: "merchant",
                actions: &[Action::PlaceRead, Action::OrgRead],
            },
            RoleGrant {
                role: "property_cashier",
                actions: &[Action::PlaceRead, Action::OrgRead, Action::HouseholdRead],
            },
            RoleGrant {
                role: "service_clerk",
                actions: &[
                    Action::PlaceRead,
                    Action::OrgRead,
                    Action::HouseholdRead,
                    Action::PersonRead,
                ],
            },
            RoleGrant {
                role: "department_data_officer",
                actions: &[Action::PlaceRead, Action::OrgRead],
            },
            RoleGrant {
                role: "party_secretary",
                actions: &[Action::PlaceRead, Action::OrgRead],
            },
            RoleGrant {
                role: "social_org_staff",
                actions: &[Action::PlaceRead, Action::OrgRead],
            },
            RoleGrant {
                role: "owners_committee_member",
                actions: &[Action::PlaceRead],
            },
            RoleGrant {
                role: "volunteer_leader",
                actions: &[Action::PlaceRead],
            },
        ],
    },
    migrations: linli_store::registry::schema::MIGRATIONS,
    api: Some(Api {
        tags: &[
            (
                "registry",
                "一户一表: places, organisations, households, persons, labels, import/export",
            ),
            ("me", "A resident's own data"),
        ],
        router: api_router,
    }),
    pages: Some(pages),
    nav: &[
        NavEntry {
            href: "/me",
            label: "web-nav-my-household",
            face: Face::Resident,
            visible: is_resident,
        },
        NavEntry {
            href: "/registry",
            label: "web-nav-registry",
            face: Face::Staff,
            visible: can_read_places,
        },
        NavEntry {
            href: "/registry/persons",
            label: "web-nav-persons",
            face: Face::Staff,
            visible: can_read_persons,
        },
        NavEntry {
            href: "/registry/links",
            label: "web-nav-person-links",
            face: Face::Staff,
            visible: can_write_persons,
        },
        NavEntry {
            href: "/registry/labels",
            label: "web-nav-labels",
            face: Face::Staff,
            visible: can_read_persons,
        },
        NavEntry {
            href: "/registry/import",
            label: "web-nav-import",
            face: Face::Admin,
            visible: can_import,
        },
        NavEntry {
            href: "/registry/export",
            label: "web-nav-export",
            face: Face::Admin,
            visible: can_export,
        },
        NavEntry {
            href: "/admin/corrections",
            label: "web-nav-corrections",
            face: Face::Admin,
            visible: can_review_corrections,
        },
    ],
    tiles: &[HomeTile {
        href: "/me",
        label: "web-nav-my-household",
        icon: "🏠",
        visible: is_resident,
    }],
    demo: Some(|store| Box::pin(store.seed_demo_geo())),
    live: &[LiveKind {
        prefix: "correction",
        action: Action::CorrectionReview,
        area_roles_only: false,
        audience: None,
    }],
    measures: &[
        Measure {
            key: "households",
            label: "web-measure-households",
            href: "/registry",
            compute: households,
        },
        Measure {
            key: "corrections_pending",
            label: "web-measure-corrections",
            href: "/admin/corrections",
            compute: corrections_pending,
        },
    ],
    locales: &["web"],
    probes: probes::PROBES,
    ..Module::NONE
};

fn api_router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(api::places::router())
        .merge(api::orgs::router())
        .merge(api::households::router())
        .merge(api::persons::router())
        .merge(api::me::router())
        .merge(api::corrections::router())
        .merge(api::import_export::router())
}

fn pages() -> Pages {
    web::registry::pages()
        .merge(web::import::pages())
        .merge(web::me::pages())
        .merge(web::admin::correction_pages())
}

fn is_resident(p: &Principal) -> bool {
    !p.own_households().is_empty()
}
fn can_read_places(p: &Principal) -> bool {
    p.can(Action::PlaceRead)
}
fn can_read_persons(p: &Principal) -> bool {
    p.can(Action::PersonRead)
}
fn can_write_persons(p: &Principal) -> bool {
    p.can(Action::PersonWrite)
}
fn can_import(p: &Principal) -> bool {
    p.can(Action::RegistryImport)
}
fn can_export(p: &Principal) -> bool {
    p.can(Action::RegistryExport)
}
fn can_review_corrections(p: &Principal) -> bool {
    p.can(Action::CorrectionReview)
}

fn households<'a>(store: &'a Store, p: &'a Principal) -> BoxFuture<'a, AppResult<Option<i64>>> {
    Box::pin(async move {
        let Ok(g) = p.grant(Action::HouseholdRead) else {
            return Ok(None);
        };
        Ok(Some(store.registry_counts(&g).await?.0))
    })
}

fn corrections_pending<'a>(
    store: &'a Store,
    p: &'a Principal,
) -> BoxFuture<'a, AppResult<Option<i64>>> {
    Box::pin(async move {
        let Ok(g) = p.grant(Action::CorrectionReview) else {
            return Ok(None);
        };
        Ok(Some(
            store.corrections(&g, Some("pending")).await?.len() as i64
        ))
    })
}
