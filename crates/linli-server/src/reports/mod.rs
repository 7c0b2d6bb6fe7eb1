//! Reports (报事 / 报修 / 投诉): intake, the routing catalogue and working-day calendar, the
//! state machine with deadlines, repairs, statistics, Open311 GeoReport v2.

pub mod probes;

use linli_core::auth::{Action, ActionInfo, CatalogPart, Principal, RoleGrant};

use std::time::Duration;

pub mod record;

use linli_core::{AppResult, BoxFuture};
use linli_store::Store;

use crate::manifest::{Api, Face, HomeTile, Job, LiveKind, Measure, Module, NavEntry, Pages};
use crate::{api, web};

pub static MODULE: Module = Module {
    name: "reports",
    catalog: CatalogPart {
        module: "reports",
        actions: &[
            ActionInfo::plain(Action::ReportRead),
            ActionInfo::plain(Action::ReportCreate),
            ActionInfo::plain(Action::ReportHandle),
            ActionInfo::plain(Action::ReportDispatch),
            ActionInfo::plain(Action::ReportStats),
            ActionInfo::plain(Action::RoutingAdmin),
        ],
        roles: &[],
        grants: &[
            RoleGrant {
                role: "grid_worker",
                actions: &[
                    Action::ReportRead,
                    Action::ReportCreate,
                    Action::ReportHandle,
                ],
            },
            RoleGrant {
                role: "committee_staff",
                actions: &[
                    Action::ReportRead,
                    Action::ReportCreate,
                    Action::ReportHandle,
                    Action::ReportDispatch,
                    Action::ReportStats,
                ],
            },
            RoleGrant {
                role: "property_staff",
                actions: &[
                    Action::ReportRead,
                    Action::ReportCreate,
                    Action::ReportHandle,
                    Action::ReportStats,
                ],
            },
            RoleGrant {
                role: "department_officer",
                actions: &[
                    Action::ReportRead,
                    Action::ReportHandle,
                    Action::ReportStats,
                ],
            },
            RoleGrant {
                role: "street_officer",
                actions: &[
                    Action::ReportRead,
                    Action::ReportCreate,
                    Action::ReportHandle,
                    Action::ReportDispatch,
                    Action::ReportStats,
                ],
            },
            RoleGrant {
                role: "department_data_officer",
                actions: &[Action::ReportStats],
            },
        ],
    },
    migrations: linli_store::reports::schema::MIGRATIONS,
    api: Some(Api {
        tags: &[(
            "reports",
            "报事 / 报修 / 投诉: intake, routing catalogue, state machine, deadlines, metrics",
        )],
        router: api::reports::router,
    }),
    pages: Some(pages),
    nav: &[
        NavEntry {
            href: "/me/reports",
            label: "web-nav-my-reports",
            face: Face::Resident,
            visible: is_resident,
        },
        NavEntry {
            href: "/staff/reports",
            label: "web-nav-reports",
            face: Face::Staff,
            visible: works_reports,
        },
        NavEntry {
            href: "/admin/routing",
            label: "web-nav-routing",
            face: Face::Admin,
            visible: reads_catalogue,
        },
        NavEntry {
            href: "/admin/calendar",
            label: "web-nav-calendar",
            face: Face::Admin,
            visible: reads_catalogue,
        },
    ],
    tiles: &[HomeTile {
        href: "/me/reports/new",
        label: "web-tile-report",
        icon: "📝",
        visible: is_resident,
    }],
    // Reminders, 催办 and escalation; the database is the job list.
    jobs: &[Job {
        name: "report-deadlines",
        every: Duration::from_secs(30),
        run: |store| Box::pin(store.reports_job()),
    }],
    record: &[&record::REPORTS],
    demo: Some(|store| Box::pin(async move { store.seed_demo_catalogue().await.map(|_| ()) })),
    live: &[LiveKind {
        prefix: "report",
        action: Action::ReportRead,
        area_roles_only: true,
        audience: Some(crate::live::report_audience),
    }],
    measures: &[
        Measure {
            key: "reports_open",
            label: "web-measure-reports-open",
            href: "/staff/reports",
            compute: reports_open,
        },
        Measure {
            key: "reports_overdue",
            label: "web-measure-reports-overdue",
            href: "/staff/reports?overdue=true",
            compute: reports_overdue,
        },
    ],
    locales: &["reports", "reports_web", "open311"],
    probes: probes::PROBES,
    ..Module::NONE
};

fn pages() -> Pages {
    web::reports::pages()
        .merge(web::catalogue::pages())
        .merge(crate::open311::pages())
}

fn is_resident(p: &Principal) -> bool {
    !p.own_households().is_empty()
}
fn works_reports(p: &Principal) -> bool {
    p.is_staff() && p.can(Action::ReportRead)
}
fn reads_catalogue(p: &Principal) -> bool {
    p.can(Action::RoutingAdmin) || p.can(Action::ReportDispatch)
}

async fn workload(
    store: &Store,
    p: &Principal,
) -> AppResult<Option<linli_store::reports::queries::Workload>> {
    if !p.is_staff() || !p.can(Action::ReportRead) {
        return Ok(None);
    }
    let viewer = store.report_viewer(p).await?;
    Ok(Some(store.report_workload(&viewer).await?))
}

fn reports_open<'a>(store: &'a Store, p: &'a Principal) -> BoxFuture<'a, AppResult<Option<i64>>> {
    Box::pin(async move { Ok(workload(store, p).await?.map(|w| w.open)) })
}

fn reports_overdue<'a>(
    store: &'a Store,
    p: &'a Principal,
) -> BoxFuture<'a, AppResult<Option<i64>>> {
    Box::pin(async move { Ok(workload(store, p).await?.map(|w| w.overdue)) })
}
