//! Migration 9: what Open311 callers tell about themselves (contact fields, personal data sealed
//! like persons' phones), the map area of places (community lookup by point), and the index the
//! community report list pages through.

use crate::db::{Stmt, Stmt::*};

pub const V9: &[Stmt] = &[
    // One row per report filed with contact fields (Open311 POST). The phone is encrypted, with
    // a blind index (matched against users' sign-in phones) and a mask for staff; the e-mail is
    // encrypted and masked; names, device and account ids are kept as given.
    Both(
        "CREATE TABLE report_contacts (
            report_id TEXT PRIMARY KEY REFERENCES reports(id),
            first_name TEXT,
            last_name TEXT,
            email_enc TEXT,
            email_masked TEXT,
            phone_enc TEXT,
            phone_bidx TEXT,
            phone_masked TEXT,
            device_id TEXT,
            account_id TEXT,
            user_id TEXT REFERENCES users(id),
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX report_contacts_phone ON report_contacts (phone_bidx)"),
    Both("CREATE INDEX report_contacts_user ON report_contacts (user_id)"),
    // The map area of a place (communities): a centre and radius, and optionally a boundary
    // polygon (JSON `[[lat, lon], …]`, WGS-84). The bounding box is kept for a cheap first cut.
    Both(
        "CREATE TABLE place_geo (
            place_id TEXT PRIMARY KEY REFERENCES places(id),
            lat_e6 BIGINT NOT NULL,
            lon_e6 BIGINT NOT NULL,
            radius_m BIGINT NOT NULL,
            boundary TEXT,
            min_lat_e6 BIGINT NOT NULL,
            max_lat_e6 BIGINT NOT NULL,
            min_lon_e6 BIGINT NOT NULL,
            max_lon_e6 BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX place_geo_box ON place_geo (min_lat_e6, max_lat_e6)"),
    // The community list pages by (created_at, id) newest first: an index walk, no sort.
    Both("CREATE INDEX reports_community_keyset ON reports (community_path, created_at, id)"),
];
