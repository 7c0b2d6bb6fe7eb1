//! 一户一表, the whole record: what every module knows about a household, gathered for the
//! household page, the API and a resident's own export. Each module declares its sections
//! ([`RecordSection`], listed in its manifest); this file only runs them.
//!
//! The rules every section follows:
//! - a section appears only when the caller may read that kind of data over this household
//!   (staff: the section's action over the household's place; the household's own residents:
//!   everything about their household);
//! - history is cut at the residence boundary: what happened at the home before this household
//!   lived there, or to a member before they joined it (in another community, say), belongs to
//!   that other record, not this one ([`RecordCtx::since`], [`RecordMember::since`]).

use serde_json::{Map, Value};

use linli_core::auth::{Action, Principal};
use linli_core::{AppError, AppResult, BoxFuture};

use crate::Store;
use crate::db::Sql;

/// One section of the household record, declared by the module that owns the data.
pub struct RecordSection {
    /// The key of the section in the record (`reports`, `devices` …).
    pub key: &'static str,
    /// What staff need over the household's place to read the section.
    pub action: Action,
    /// The section's items (a JSON array), for a caller already allowed to read it.
    pub load: for<'a> fn(&'a Store, &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>>,
}

/// The household a section is loaded for.
pub struct RecordCtx<'a> {
    pub principal: &'a Principal,
    pub household_id: &'a str,
    /// The household's place path (its room).
    pub path: &'a str,
    /// Whether the caller lives in the household.
    pub own: bool,
    /// Since when the household lives at this address (ms; 0 when unknown): what happened at
    /// the home before belongs to the previous occupants.
    pub since: i64,
    /// The current members, each with the day they joined.
    pub members: &'a [RecordMember],
}

/// A current member of the household.
pub struct RecordMember {
    pub person_id: String,
    pub name: String,
    /// Since when the person lives in this household (ms): their earlier history stays with
    /// their earlier record.
    pub since: i64,
}

impl RecordCtx<'_> {
    pub fn member_ids(&self) -> Vec<String> {
        self.members.iter().map(|m| m.person_id.clone()).collect()
    }

    /// "At this home, in this household's time", as SQL on the columns `{alias}path`,
    /// `{alias}person_id` and the instant column `at`: the home since the household moved in,
    /// or one of its members since they joined.
    pub fn push_home(&self, q: &mut Sql, alias: &str, at: &str) {
        q.push("((");
        q.scope(&format!("{alias}path"), &[self.path.to_string()]);
        q.push(" AND ")
            .push(alias)
            .push(at)
            .push(" >= ")
            .bind(self.since);
        q.push(")");
        for m in self.members {
            q.push(" OR (")
                .push(alias)
                .push("person_id = ")
                .bind(m.person_id.clone());
            q.push(" AND ")
                .push(alias)
                .push(at)
                .push(" >= ")
                .bind(m.since);
            q.push(")");
        }
        q.push(")");
    }

    /// "One of the members, since they joined", as SQL on `{alias}person_id` and `{alias}{at}`.
    pub fn push_members(&self, q: &mut Sql, alias: &str, at: &str) {
        q.push("(");
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(")
                .push(alias)
                .push("person_id = ")
                .bind(m.person_id.clone());
            q.push(" AND ")
                .push(alias)
                .push(at)
                .push(" >= ")
                .bind(m.since);
            q.push(")");
        }
        if self.members.is_empty() {
            q.push("1 = 0");
        }
        q.push(")");
    }
}

/// Midnight of a `YYYY-MM-DD` day in the installation's time zone (ms); 0 when missing or
/// unreadable.
fn day_start(zone: linli_core::tz::Zone, day: Option<&str>) -> i64 {
    day.and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| zone.utc_ms(t))
        .unwrap_or(0)
}

impl Store {
    /// Every section the caller may read of the household's record, by section key (see the
    /// module comment). Not found when the caller may not read the household at all.
    pub async fn household_record(
        &self,
        p: &Principal,
        id: &str,
        sections: &[&RecordSection],
    ) -> AppResult<Map<String, Value>> {
        let not_found = || AppError::not_found("registry.household.not_found");
        let h = self
            .household_row_unscoped(id)
            .await?
            .ok_or_else(not_found)?;
        let own = p.own_households().contains(&h.id);
        if !own && !p.may(Action::HouseholdRead, &h.path) {
            return Err(not_found());
        }
        let zone = self.clock.zone();
        let members: Vec<RecordMember> = self
            .db
            .fetch_all_fast(
                &Sql::new(
                    "SELECT p.id, p.name, r.start_date FROM residences r JOIN persons p ON p.id = r.person_id WHERE r.household_id = $1 AND r.end_date IS NULL ORDER BY p.id",
                )
                .arg(&h.id),
            )
            .await?
            .into_iter()
            .map(|mut r| RecordMember {
                person_id: r.take_str("id").unwrap_or_default(),
                name: r.take_str("name").unwrap_or_default(),
                since: day_start(zone, r.opt_str_ref("start_date")),
            })
            .collect();
        let ctx = RecordCtx {
            principal: p,
            household_id: &h.id,
            path: &h.path,
            own,
            since: day_start(zone, h.moved_in.as_deref()),
            members: &members,
        };
        let mut out = Map::new();
        for s in sections {
            if own || p.may(s.action, &h.path) {
                out.insert(s.key.to_string(), (s.load)(self, &ctx).await?);
            }
        }
        Ok(out)
    }
}
