//! Intake: a resident reports from the phone page, staff enter a report on a resident's behalf
//! (代客, phone intake), grid workers report what they find on patrol, integrations (Open311,
//! IoT) with a token. Before submitting, likely duplicates are shown so the resident can add
//! "me too" instead.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Principal};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, Val, db_err, i64_, opt_i64, str_};

use super::contacts::NewContact;
use super::writer::NewRow;
use super::{CHANNELS, Report, community_prefix, not_found, path_ids};

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct NewReport {
    pub category: String,
    #[serde(default)]
    pub title: Option<String>,
    pub description: String,
    /// The community, building, unit or room; required unless `lat`/`lon` are given, when the
    /// report is placed in the community whose map area holds the point.
    #[serde(default)]
    pub place_id: Option<String>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub plan_x: Option<i64>,
    #[serde(default)]
    pub plan_y: Option<i64>,
    /// Hide the reporter from neighbours.
    #[serde(default)]
    pub anonymous: bool,
    /// Agree to show the report to neighbours after moderation (never for complaints).
    #[serde(default)]
    pub public: bool,
    /// Staff and integrations: staff_proxy, phone, grid_patrol, open311, iot.
    #[serde(default)]
    pub channel: Option<String>,
    /// Staff entering on a resident's behalf: the resident's household.
    #[serde(default)]
    pub household_id: Option<String>,
}

/// What the reporter sees after submitting.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Created {
    pub report: Report,
    /// The notice of the routing rule (in the caller's language is chosen by the API).
    pub notice_zh: Option<String>,
    pub notice_en: Option<String>,
}

/// A possible duplicate, as much as the asker may see.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Duplicate {
    pub id: String,
    pub category: String,
    /// Shown only when the report is public or the asker's own / staff's.
    pub title: Option<String>,
    pub place_id: String,
    pub status: String,
    pub supporters: i64,
    pub created_at: i64,
    /// Metres from the given point, when both have coordinates.
    pub distance_m: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
pub struct DuplicateQuery {
    pub category: String,
    pub place_id: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

/// Reports within this distance count as nearby.
pub const NEAR_METRES: f64 = 150.0;
/// Only reports this recent are offered as duplicates.
pub const DUPLICATE_WINDOW_MS: i64 = 30 * 86_400_000;

fn e6(v: Option<f64>, field: &str, range: f64) -> AppResult<Option<i64>> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x.abs() <= range => Ok(Some((x * 1e6).round() as i64)),
        Some(_) => Err(AppError::bad_request("validation.bad_value").arg("field", field)),
    }
}

pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let r = 6_371_000.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * r * a.sqrt().asin()
}

impl Store {
    /// Submit a report. Residents report in their own community for their household; staff with
    /// `ReportCreate` report anywhere in their area (代客 / phone / patrol), integrations with a
    /// token. The category must exist and a place is required (or a point inside a community's
    /// map area). Answers after commit.
    pub async fn create_report(&self, p: &Principal, new: NewReport) -> AppResult<Created> {
        self.create_report_with_contact(p, new, None).await
    }

    /// [`Store::create_report`] with the contact details the caller gave (Open311): validated
    /// and sealed (see `contacts`), stored in the same transaction as the report. When the phone
    /// belongs to a registered resident of the report's community (and the caller's area covers
    /// their household), the report is filed for that household.
    pub async fn create_report_with_contact(
        &self,
        p: &Principal,
        new: NewReport,
        contact: Option<&NewContact>,
    ) -> AppResult<Created> {
        let mut new = new;
        let cat = self.report_category(new.category.trim()).await?;
        let description = new.description.trim().to_string();
        if description.is_empty() {
            return Err(AppError::required("description"));
        }
        if description.chars().count() > 4000 {
            return Err(AppError::bad_request("validation.too_long").arg("field", "description"));
        }
        let title = match new
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(t) if t.chars().count() > 100 => {
                return Err(AppError::bad_request("validation.too_long").arg("field", "title"));
            }
            Some(t) => t.to_string(),
            None => description.chars().take(40).collect(),
        };
        let lat = e6(new.lat, "lat", 90.0)?;
        let lon = e6(new.lon, "lon", 180.0)?;
        if lat.is_some() != lon.is_some() {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "lon"));
        }
        // The place given wins (the point is kept beside it); a bare point is placed in the
        // community whose map area holds it.
        let place_id = match new
            .place_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(id) => id.to_string(),
            None => match new.lat.zip(new.lon) {
                Some((la, lo)) => self.community_for_point(la, lo).await?,
                None => return Err(AppError::bad_request("report.location_required")),
            },
        };
        let place_id = place_id.as_str();
        for (f, v) in [("plan_x", new.plan_x), ("plan_y", new.plan_y)] {
            if v.is_some_and(|v| !(0..=1000).contains(&v)) {
                return Err(AppError::bad_request("validation.bad_value").arg("field", f));
            }
        }
        if cat.kind == "complaint" && new.public {
            return Err(AppError::bad_request("report.complaint_never_public"));
        }
        let place = self
            .place_unscoped(place_id)
            .await?
            .filter(|pl| !["city", "district", "street"].contains(&pl.kind.as_str()))
            .ok_or_else(|| AppError::bad_request("report.location_required"))?;
        let contact = match contact.filter(|c| !c.is_empty()) {
            Some(c) => {
                let (sealed, household) = self.seal_contact(c, &place.path).await?;
                let covered = |path: &str| p.may(Action::ReportCreate, path);
                if new.household_id.is_none()
                    && let Some((h, _)) = household.filter(|(_, path)| covered(path))
                {
                    new.household_id = Some(h);
                }
                Some(sealed)
            }
            None => None,
        };

        // Who reports, for whom, through which channel.
        let staff = p.grant(Action::ReportCreate).ok();
        let as_resident = new.channel.is_none() || new.channel.as_deref() == Some("resident_app");
        let (channel, reporter, household_id) = if as_resident
            && (staff.is_none() || !p.own_households().is_empty())
        {
            // A resident: the place must be in the community of one of their households.
            let mut hh = None;
            for h in p.own_households() {
                if let Some(hp) = self.household_path(&h).await?
                    && let Some(c) = community_prefix(&hp)
                    && place.path.starts_with(&c)
                {
                    hh = Some(h);
                    break;
                }
            }
            let Some(hh) = hh else {
                return Err(if p.own_households().is_empty() {
                    AppError::forbidden()
                } else {
                    AppError::bad_request("report.place_outside_community")
                });
            };
            (
                "resident_app".to_string(),
                Some(p.user_id().to_string()),
                Some(hh),
            )
        } else {
            let g = staff.ok_or_else(AppError::forbidden)?;
            if !g.allows(Action::ReportCreate, &place.path) {
                return Err(AppError::bad_request("report.location_required"));
            }
            let default = if p.has_role(&linli_core::auth::Role::GridWorker) {
                "grid_patrol"
            } else {
                "staff_proxy"
            };
            let channel = new
                .channel
                .clone()
                .filter(|c| c != "resident_app")
                .unwrap_or_else(|| default.into());
            if !CHANNELS.contains(&channel.as_str()) || channel == "resident_app" {
                return Err(AppError::bad_request("validation.bad_value").arg("field", "channel"));
            }
            let hh = match new.household_id.as_deref().filter(|s| !s.is_empty()) {
                Some(h) => {
                    self.household_path(h)
                        .await?
                        .filter(|hp| g.allows(Action::ReportCreate, hp))
                        .ok_or_else(|| {
                            AppError::bad_request("validation.bad_value")
                                .arg("field", "household_id")
                        })?;
                    Some(h.to_string())
                }
                None => None,
            };
            // The platform itself (an alarm rule) has no user row to name as reporter.
            let reporter = (!p.is_system()).then(|| p.user_id().to_string());
            (channel, reporter, hh)
        };

        let rule = self.route(&cat.code, &place.path).await?;
        let community = community_prefix(&place.path).unwrap_or_else(|| place.path.clone());
        let now = self.now_ms();
        let id = new_id();
        let actor = Actor::from(p);
        let to: Vec<String> = self
            .report_dispatchers_now(&place.path)
            .await?
            .into_iter()
            .filter(|u| *u != p.user_id())
            .collect();
        // The answer is built from what was written (no read-back on the hot path).
        let report = Report {
            id: id.clone(),
            kind: cat.kind.clone(),
            category: cat.code.clone(),
            title: title.clone(),
            description: description.clone(),
            place_id: place.id.clone(),
            path: place.path.clone(),
            lat: lat.map(|v| v as f64 / 1e6),
            lon: lon.map(|v| v as f64 / 1e6),
            plan_x: new.plan_x,
            plan_y: new.plan_y,
            channel: channel.clone(),
            anonymous: new.anonymous,
            reporter_user_id: reporter.clone(),
            household_id: household_id.clone(),
            status: "submitted".into(),
            unit_id: None,
            unit_name: None,
            routing_rule_id: rule.as_ref().map(|r| r.id.clone()),
            sign_by: None,
            first_contact_by: None,
            resolve_by: None,
            calendar_warning: None,
            accepted_at: None,
            dispatched_at: None,
            signed_at: None,
            first_contact_at: None,
            replied_at: None,
            closed_at: None,
            overdue_sign: false,
            overdue_resolve: false,
            outcome: None,
            reject_reason: None,
            duplicate_of: None,
            public_requested: new.public && cat.kind != "complaint",
            public: false,
            returned_count: 0,
            reopened_count: 0,
            extended_count: 0,
            escalation_level: 0,
            extension_days: None,
            rating: None,
            solved: None,
            supporters: 0,
            assignee_user_id: None,
            assignee_name: None,
            assigned_at: None,
            dispatch_mode: None,
            paid: false,
            return_visit: None,
            visit_sample_percent: None,
            quote_fen: None,
            quote_note: None,
            quote_status: None,
            quoted_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
            open311_status: "open".into(),
            extended_status: "OPEN".into(),
        };
        let values: Vec<Val> = vec![
            id.clone().into(),
            cat.kind.clone().into(),
            cat.code.clone().into(),
            title.clone().into(),
            description.into(),
            place.id.clone().into(),
            place.path.clone().into(),
            community.into(),
            lat.into(),
            lon.into(),
            new.plan_x.into(),
            new.plan_y.into(),
            channel.clone().into(),
            i64::from(new.anonymous).into(),
            reporter.into(),
            household_id.clone().into(),
            p.user_id().to_string().into(),
            "submitted".into(),
            rule.as_ref().map(|r| r.id.clone()).into(),
            i64::from(new.public && cat.kind != "complaint").into(),
        ];
        // Group commit: answered only after the transaction holding it committed.
        self.write_new_report(NewRow {
            id: id.clone(),
            path: place.path.clone(),
            title,
            values,
            at: now,
            actor,
            event_data: serde_json::json!({ "channel": channel, "category": cat.code }),
            audit_after: serde_json::json!({ "category": cat.code, "channel": channel, "place_id": place.id, "household_id": household_id, "contact": contact.is_some(), "contact_user_id": contact.as_ref().and_then(|c| c.user_id.clone()) }),
            notify: to,
            contact,
        })
        .await?;
        Ok(Created {
            report,
            notice_zh: rule.as_ref().map(|r| r.notice_zh.clone()),
            notice_en: rule.as_ref().map(|r| r.notice_en.clone()),
        })
    }

    /// The community a bare report point lies in ([`Store::community_at`]). A point in no
    /// community is `report.point_in_no_community` while any community has a map area, else
    /// `report.location_required` (installations without map areas ask for a place as before).
    async fn community_for_point(&self, lat: f64, lon: f64) -> AppResult<String> {
        match self.community_at(lat, lon).await? {
            Some(hit) => Ok(hit.place_id),
            None if self.communities_have_geo(&["/".to_string()]).await? => {
                Err(AppError::bad_request("report.point_in_no_community")
                    .arg("lat", lat.to_string())
                    .arg("lon", lon.to_string()))
            }
            None => Err(AppError::bad_request("report.location_required")),
        }
    }

    /// Open reports of the same category, recent, at the same building (or the same place when
    /// it is not in a building) or within [`NEAR_METRES`]. Residents see them only in their own
    /// communities, never complaints, and titles only of public or their own reports.
    pub async fn report_duplicates(
        &self,
        p: &Principal,
        q: &DuplicateQuery,
    ) -> AppResult<Vec<Duplicate>> {
        let viewer = self.report_viewer(p).await?;
        self.report_category(&q.category).await?;
        let place = self
            .place_unscoped(&q.place_id)
            .await?
            .ok_or_else(|| AppError::bad_request("report.location_required"))?;
        let staff = viewer.works_in(&place.path);
        let in_own_community = viewer
            .communities
            .iter()
            .any(|c| place.path.starts_with(c.as_str()));
        if !staff && !in_own_community {
            return Err(not_found());
        }
        let ids = path_ids(&place.path);
        // Building = depth 6 (city/district/street/community/grid/building).
        let near_prefix = if ids.len() >= 6 {
            format!("/{}/", ids[..6].join("/"))
        } else {
            place.path.clone()
        };
        let lat = e6(q.lat, "lat", 90.0)?;
        let lon = e6(q.lon, "lon", 180.0)?;
        let mut s = Sql::new(
            "SELECT id, category, title, place_id, path, status, supporters, created_at, lat_e6, lon_e6, public_approved, household_id, kind, unit_id FROM reports WHERE category = ",
        );
        s.bind(q.category.clone());
        s.push(" AND status <> 'closed' AND created_at >= ")
            .bind(self.now_ms() - DUPLICATE_WINDOW_MS);
        s.push(" AND (");
        s.scope("path", &[near_prefix]);
        if let (Some(la), Some(lo)) = (lat, lon) {
            // A bounding box first (index-free but small after the category filter).
            let dlat = (NEAR_METRES / 111_000.0 * 1e6) as i64;
            let dlon = (NEAR_METRES / (111_000.0 * (la as f64 / 1e6).to_radians().cos().max(0.1))
                * 1e6) as i64;
            s.push(" OR (lat_e6 BETWEEN ")
                .bind(la - dlat)
                .push(" AND ")
                .bind(la + dlat)
                .push(" AND lon_e6 BETWEEN ")
                .bind(lo - dlon)
                .push(" AND ")
                .bind(lo + dlon)
                .push(")");
        }
        s.push(") ORDER BY created_at DESC LIMIT 20");
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let path = str_(r, "path");
            let own = crate::db::opt_str(r, "household_id")
                .is_some_and(|h| viewer.households.contains(&h));
            // Staff of the area, or of the unit handling it (summons are not looked up here).
            let is_staff = viewer.is_staff_for(&path)
                || (viewer.works_in(&path)
                    && crate::db::opt_str(r, "unit_id").is_some_and(|u| viewer.units.contains(&u)));
            if !is_staff && str_(r, "kind") == "complaint" {
                continue;
            }
            if !is_staff
                && !viewer
                    .communities
                    .iter()
                    .any(|c| path.starts_with(c.as_str()))
            {
                continue;
            }
            let distance = match (lat, lon, opt_i64(r, "lat_e6"), opt_i64(r, "lon_e6")) {
                (Some(a), Some(b), Some(c), Some(d)) => {
                    let m = distance_m(
                        a as f64 / 1e6,
                        b as f64 / 1e6,
                        c as f64 / 1e6,
                        d as f64 / 1e6,
                    );
                    if m > NEAR_METRES && !path.starts_with(&place.path) {
                        continue;
                    }
                    Some(m.round() as i64)
                }
                _ => None,
            };
            let show_title = is_staff || own || i64_(r, "public_approved") != 0;
            out.push(Duplicate {
                id: str_(r, "id"),
                category: str_(r, "category"),
                title: show_title.then(|| str_(r, "title")),
                place_id: str_(r, "place_id"),
                status: str_(r, "status"),
                supporters: i64_(r, "supporters"),
                created_at: i64_(r, "created_at"),
                distance_m: distance,
            });
        }
        Ok(out)
    }

    /// "Me too" (我也遇到): a resident of the community (or staff of the area) supports an open
    /// report instead of filing a duplicate. Once per user; returns the new count.
    pub async fn report_me_too(&self, p: &Principal, id: &str) -> AppResult<i64> {
        let viewer = self.report_viewer(p).await?;
        let r = self.report_unscoped(id).await?.ok_or_else(not_found)?;
        let staff = self.report_staff_view(&viewer, &r).await?;
        let neighbour = r.kind != "complaint"
            && viewer
                .communities
                .iter()
                .any(|c| r.path.starts_with(c.as_str()));
        if !staff && !neighbour {
            return Err(not_found());
        }
        if r.status == "closed" {
            return Err(AppError::conflict("report.illegal_transition"));
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // One "me too" per person, decided by the primary key where it is written (two clicks
        // at once: one counts, the other is told it already did).
        let added = sqlx::query(
            "INSERT INTO report_supporters (report_id, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(p.user_id().to_string())
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if added.rows_affected() == 0 {
            return Err(AppError::conflict("report.already_supported"));
        }
        // Still open now: it may have been closed, or merged into another report, since it was
        // read, and a supporter added to a merged report would never reach the survivor.
        let row = sqlx::query(
            "UPDATE reports SET supporters = supporters + 1, updated_at = $2 WHERE id = $1 AND status <> 'closed' RETURNING supporters",
        )
        .bind(id.to_string())
        .bind(self.now_ms())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| AppError::conflict("report.illegal_transition"))?;
        let n = i64_(&row, "supporters");
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "report.me_too",
                entity: "report",
                entity_id: id,
                path: Some(&r.path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "supporters": n })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_report("me_too", id, &r.path);
        Ok(n)
    }
}
