//! IoT and safety (物联感知): devices, telemetry over MQTT and HTTP, alarm rules, alarms with
//! their lifecycle and escalation, SOS 一键通 and daily check-ins.

pub mod alarm_page;
pub mod care_page;
pub mod live_page;
pub mod pages;
pub mod probes;
pub mod record;

use linli_core::auth::{Action, ActionInfo, CatalogPart, Principal, RoleGrant};

use linli_core::{AppResult, BoxFuture};
use linli_store::Store;
use linli_store::iot::alarms::AlarmQuery;

use crate::api;
use crate::manifest::{Api, Face, LiveKind, Measure, Module, NavEntry, Pages};

pub static MODULE: Module = Module {
    name: "iot",
    catalog: CatalogPart {
        module: "iot",
        actions: &[
            ActionInfo::plain(Action::DeviceRead),
            ActionInfo::plain(Action::DeviceAdmin),
            ActionInfo::plain(Action::AlarmRead),
            ActionInfo::plain(Action::AlarmHandle),
        ],
        roles: &[],
        grants: &[
            RoleGrant {
                role: "grid_worker",
                actions: &[Action::DeviceRead, Action::AlarmRead, Action::AlarmHandle],
            },
            RoleGrant {
                role: "committee_staff",
                actions: &[Action::DeviceRead, Action::AlarmRead, Action::AlarmHandle],
            },
            RoleGrant {
                role: "property_staff",
                actions: &[
                    Action::DeviceRead,
                    Action::DeviceAdmin,
                    Action::AlarmRead,
                    Action::AlarmHandle,
                ],
            },
            RoleGrant {
                role: "street_officer",
                actions: &[Action::DeviceRead, Action::AlarmRead],
            },
        ],
    },
    migrations: linli_store::iot::schema::MIGRATIONS,
    api: Some(Api {
        tags: &[(
            "iot",
            "物联感知: devices, telemetry, alarm rules, alarms, SOS 一键通",
        )],
        router: api::iot::router,
    }),
    pages: Some(all_pages),
    nav: &[NavEntry {
        href: "/staff/safety",
        label: "web-nav-safety",
        face: Face::Staff,
        visible: reads_alarms,
    }],
    demo: Some(|store| Box::pin(async move { store.seed_iot_demo().await.map(|_| ()) })),
    record: &[&record::DEVICES, &record::ALARMS, &record::CARE],
    live: &[
        LiveKind {
            prefix: "alarm",
            action: Action::AlarmRead,
            area_roles_only: false,
            audience: None,
        },
        LiveKind {
            prefix: "device",
            action: Action::AlarmRead,
            area_roles_only: false,
            audience: None,
        },
    ],
    measures: &[Measure {
        key: "alarms_active",
        label: "web-measure-alarms-active",
        href: "/staff/safety",
        compute: alarms_active,
    }],
    locales: &["iot"],
    probes: probes::PROBES,
    ..Module::NONE
};

fn all_pages() -> Pages {
    pages::pages()
        .merge(live_page::pages())
        .merge(alarm_page::pages())
        .merge(care_page::pages())
}

fn reads_alarms(p: &Principal) -> bool {
    p.can(Action::AlarmRead)
}

fn alarms_active<'a>(store: &'a Store, p: &'a Principal) -> BoxFuture<'a, AppResult<Option<i64>>> {
    Box::pin(async move {
        let Ok(g) = p.grant(Action::AlarmRead) else {
            return Ok(None);
        };
        let q = AlarmQuery {
            active: Some(true),
            limit: Some(1000),
            ..Default::default()
        };
        Ok(Some(store.alarms(&g, &q).await?.len() as i64))
    })
}
