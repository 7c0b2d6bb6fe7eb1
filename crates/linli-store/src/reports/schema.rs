//! Tables of the reports engine (migration 2).
//!
//! - `report_categories`: what can be reported (kind + names); the catalogue routes by code.
//! - `routing_rules`: the routing catalogue (派单目录), one row per version of a rule; the row a
//!   report was routed with is remembered in `reports.routing_rule_id`.
//! - `calendar_years` / `calendar_days`: the working-day calendar as data.
//! - `reports`, `report_events` (every transition), `report_summons` (吹哨), `report_photos`,
//!   `report_supporters` ("me too"), `report_alerts` (deadline steps done, once each).

use crate::db::{Migration, Stmt, Stmt::*};

/// The reports module's migrations, in order.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2,
        name: "reports: catalogue, calendar, reports and their events",
        statements: V2,
    },
    Migration {
        version: 8,
        name: "repairs: assignee, dispatch settings, price quote, round-robin cursors",
        statements: V8,
    },
    Migration {
        version: 9,
        name: "reports: Open311 contacts, map areas of places, community list keyset index",
        statements: super::schema_v9::V9,
    },
    Migration {
        version: 11,
        name: "reports: summoned units looked up by unit (unit staff visibility)",
        statements: V11,
    },
];

pub const V2: &[Stmt] = &[
    Both(
        "CREATE TABLE report_categories (
            code TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            sort_key BIGINT NOT NULL DEFAULT 0)",
    ),
    Both(
        "INSERT INTO report_categories (code, kind, name_zh, name_en, sort_key) VALUES
            ('public_facility', 'public_affair', '公共设施', 'Public facilities', 10),
            ('environment', 'public_affair', '环境卫生', 'Sanitation', 20),
            ('city_appearance', 'public_affair', '市容市貌（占道、违建、乱堆放）', 'City appearance (obstruction, illegal building, dumping)', 30),
            ('public_security', 'public_affair', '治安隐患', 'Public security', 40),
            ('dispute', 'public_affair', '邻里纠纷', 'Neighbour dispute', 50),
            ('water', 'public_affair', '供水排水', 'Water supply and drainage', 60),
            ('repair_plumbing', 'repair', '水电维修', 'Plumbing and electrics', 110),
            ('repair_elevator', 'repair', '电梯故障', 'Lift breakdown', 120),
            ('repair_door', 'repair', '单元门禁', 'Entrance door and access control', 130),
            ('repair_common', 'repair', '公共部位维修', 'Common-area repairs', 140),
            ('complaint_property', 'complaint', '物业服务投诉', 'Complaint about property management', 210),
            ('complaint_other', 'complaint', '其他投诉', 'Other complaint', 220),
            ('suggestion', 'suggestion', '意见建议', 'Suggestion', 310),
            ('inquiry', 'inquiry', '政策咨询', 'Policy inquiry', 410)",
    ),
    Both(
        "CREATE TABLE routing_rules (
            id TEXT PRIMARY KEY,
            rule_key TEXT NOT NULL,
            version BIGINT NOT NULL,
            current BIGINT NOT NULL,
            category TEXT NOT NULL REFERENCES report_categories(code),
            area_id TEXT NOT NULL REFERENCES places(id),
            area_path {ptext} NOT NULL,
            unit_id TEXT NOT NULL REFERENCES orgs(id),
            deadline_unit TEXT NOT NULL,
            sign_by BIGINT NOT NULL,
            first_contact_by BIGINT NOT NULL,
            resolve_by BIGINT NOT NULL,
            notice_zh TEXT NOT NULL,
            notice_en TEXT NOT NULL,
            dispatch_mode TEXT NOT NULL,
            paid BIGINT NOT NULL,
            return_visit TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE UNIQUE INDEX routing_rules_version ON routing_rules (rule_key, version)"),
    Both("CREATE INDEX routing_rules_lookup ON routing_rules (category, current, area_path)"),
    Both("CREATE TABLE calendar_years (year BIGINT PRIMARY KEY, source TEXT NOT NULL, created_at BIGINT NOT NULL)"),
    Both(
        "CREATE TABLE calendar_days (
            day TEXT PRIMARY KEY,
            is_workday BIGINT NOT NULL,
            source TEXT NOT NULL)",
    ),
    Both(
        "CREATE TABLE reports (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            category TEXT NOT NULL REFERENCES report_categories(code),
            title TEXT NOT NULL,
            description TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            community_path {ptext} NOT NULL,
            lat_e6 BIGINT,
            lon_e6 BIGINT,
            plan_x BIGINT,
            plan_y BIGINT,
            channel TEXT NOT NULL,
            anonymous BIGINT NOT NULL,
            reporter_user_id TEXT REFERENCES users(id),
            household_id TEXT REFERENCES households(id),
            contact TEXT,
            created_by TEXT NOT NULL,
            status TEXT NOT NULL,
            unit_id TEXT REFERENCES orgs(id),
            routing_rule_id TEXT REFERENCES routing_rules(id),
            sign_by BIGINT,
            first_contact_by BIGINT,
            resolve_by BIGINT,
            calendar_warning TEXT,
            accepted_at BIGINT,
            dispatched_at BIGINT,
            signed_at BIGINT,
            first_contact_at BIGINT,
            replied_at BIGINT,
            closed_at BIGINT,
            overdue_sign BIGINT NOT NULL DEFAULT 0,
            overdue_resolve BIGINT NOT NULL DEFAULT 0,
            outcome TEXT,
            reject_reason TEXT,
            duplicate_of TEXT REFERENCES reports(id),
            public_requested BIGINT NOT NULL,
            public_approved BIGINT NOT NULL DEFAULT 0,
            returned_count BIGINT NOT NULL DEFAULT 0,
            reopened_count BIGINT NOT NULL DEFAULT 0,
            extended_count BIGINT NOT NULL DEFAULT 0,
            escalation_level BIGINT NOT NULL DEFAULT 0,
            extension_days BIGINT,
            rating BIGINT,
            solved BIGINT,
            supporters BIGINT NOT NULL DEFAULT 0,
            version BIGINT NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX reports_path ON reports (path, created_at)"),
    Both("CREATE INDEX reports_community_public ON reports (community_path, public_approved, created_at)"),
    Both("CREATE INDEX reports_reporter ON reports (reporter_user_id, created_at)"),
    Both("CREATE INDEX reports_household ON reports (household_id, created_at)"),
    Both("CREATE INDEX reports_status ON reports (status, created_at)"),
    Both("CREATE INDEX reports_unit ON reports (unit_id, status)"),
    Both("CREATE INDEX reports_sign_due ON reports (sign_by)"),
    Both("CREATE INDEX reports_resolve_due ON reports (resolve_by)"),
    Both("CREATE INDEX reports_dup ON reports (category, place_id, status)"),
    Both(
        "CREATE TABLE report_events (
            id TEXT PRIMARY KEY,
            report_id TEXT NOT NULL REFERENCES reports(id),
            action TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT NOT NULL,
            actor_id TEXT NOT NULL,
            actor TEXT NOT NULL,
            at BIGINT NOT NULL,
            public_note TEXT,
            internal_note TEXT,
            data TEXT NOT NULL)",
    ),
    Both("CREATE INDEX report_events_report ON report_events (report_id, at)"),
    Both(
        "CREATE TABLE report_summons (
            id TEXT PRIMARY KEY,
            report_id TEXT NOT NULL REFERENCES reports(id),
            unit_id TEXT NOT NULL REFERENCES orgs(id),
            summoned_at BIGINT NOT NULL,
            signed_at BIGINT,
            replied_at BIGINT,
            reply TEXT)",
    ),
    Both("CREATE UNIQUE INDEX report_summons_open ON report_summons (report_id, unit_id) WHERE replied_at IS NULL"),
    Both(
        "CREATE TABLE report_photos (
            id TEXT PRIMARY KEY,
            report_id TEXT NOT NULL REFERENCES reports(id),
            stage TEXT NOT NULL,
            file_name TEXT NOT NULL,
            mime TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            uploaded_by TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX report_photos_report ON report_photos (report_id)"),
    Both(
        "CREATE TABLE report_supporters (
            report_id TEXT NOT NULL REFERENCES reports(id),
            user_id TEXT NOT NULL REFERENCES users(id),
            created_at BIGINT NOT NULL,
            PRIMARY KEY (report_id, user_id))",
    ),
    Both(
        "CREATE TABLE report_alerts (
            report_id TEXT NOT NULL REFERENCES reports(id),
            stage TEXT NOT NULL,
            step TEXT NOT NULL,
            due_at BIGINT NOT NULL,
            at BIGINT NOT NULL,
            PRIMARY KEY (report_id, stage, step, due_at))",
    ),
];

/// Repairs (migration 8): a per-person assignee, the repair settings the report was dispatched
/// with (so a later catalogue edit does not change work in flight), the price quote of paid
/// repairs, the sampling rate of `sample` return visits, and the round-robin cursor per unit.
pub const V8: &[Stmt] = &[
    Both("ALTER TABLE reports ADD COLUMN assignee_user_id TEXT REFERENCES users(id)"),
    Both("ALTER TABLE reports ADD COLUMN assigned_at BIGINT"),
    Both("ALTER TABLE reports ADD COLUMN dispatch_mode TEXT"),
    Both("ALTER TABLE reports ADD COLUMN paid BIGINT NOT NULL DEFAULT 0"),
    Both("ALTER TABLE reports ADD COLUMN return_visit TEXT"),
    Both("ALTER TABLE reports ADD COLUMN visit_sample_percent BIGINT"),
    Both("ALTER TABLE reports ADD COLUMN quote_fen BIGINT"),
    Both("ALTER TABLE reports ADD COLUMN quote_note TEXT"),
    Both("ALTER TABLE reports ADD COLUMN quote_status TEXT"),
    Both("ALTER TABLE reports ADD COLUMN quoted_at BIGINT"),
    Both("CREATE INDEX reports_assignee ON reports (assignee_user_id, status)"),
    Both("CREATE INDEX reports_grab_pool ON reports (unit_id, dispatch_mode, assignee_user_id)"),
    Both("ALTER TABLE routing_rules ADD COLUMN visit_sample_percent BIGINT NOT NULL DEFAULT 30"),
    Both(
        "CREATE TABLE dispatch_cursors (
            unit_id TEXT PRIMARY KEY REFERENCES orgs(id),
            last_user_id TEXT NOT NULL,
            updated_at BIGINT NOT NULL)",
    ),
];

/// Unit visibility: a property company's or department's staff see the reports their unit was
/// summoned to (吹哨), found from the unit's side.
pub const V11: &[Stmt] = &[Both(
    "CREATE INDEX report_summons_unit ON report_summons (unit_id, report_id)",
)];
