//! The transaction frame every action runs in. An action function gets an [`Act`] (the report
//! as the caller saw it, who the caller is to it, now, the notes), checks who may act, reads
//! what it needs, and describes its [`Change`]; [`Act::write`] then opens the transaction,
//! re-reads the row, refuses if its version moved (409), asks the state machine
//! (`linli_core::reports::state::next`) for the new status (409 with the machine's code when it
//! refuses) and updates the row with the version guard. The action adds its side rows and says
//! who is told on the returned [`Written`]; [`Written::commit`] writes the event row and the
//! audit entry, the inbox notices, and commits. The bus event follows the commit
//! ([`super`]'s `report_act`).

use serde_json::{Value, json};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Principal};
use linli_core::reports::state::{self, Status, Transition, TransitionError};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{self, Actor, Entry};
use crate::db::{Sql, Val, db_err, i64_};
use crate::notify::Notice;

use super::super::{
    REPORT_COLS, REPORT_FROM, Report, Unit, Viewer, context_of, not_found, parse_status,
    report_from_row, status_str,
};
use super::command::{Command, Notes};

/// One action about to happen: the report as loaded, who the caller is to it, and when.
pub(crate) struct Act<'a> {
    pub store: &'a Store,
    pub p: &'a Principal,
    pub viewer: Viewer,
    /// The report as the caller may see it now; every write is guarded by its `version`.
    pub r: Report,
    pub from: Status,
    pub now: i64,
    pub notes: Notes,
    /// The unit handling the report now.
    pub unit: Option<Unit>,
    /// `ReportDispatch` over the report's place.
    pub can_dispatch: bool,
    /// `ReportHandle` there and working for the current unit, or a dispatcher.
    pub can_handle: bool,
    /// The reporter, or a resident of the report's household.
    pub is_reporter: bool,
    /// The action's wire name.
    pub name: &'static str,
}

impl<'a> Act<'a> {
    /// The frame for `command` on `r` (visible to the caller). A `version` the caller read
    /// that is no longer the report's is a 409 before anything else.
    pub async fn load(
        store: &'a Store,
        p: &'a Principal,
        viewer: Viewer,
        r: Report,
        command: &Command,
        notes: Notes,
        version: Option<i64>,
    ) -> AppResult<Act<'a>> {
        let name = command.name();
        if let Some(v) = version
            && v != r.version
        {
            // A page posts the version it showed; for a grab the news is that someone was faster.
            return Err(lost_race(name));
        }
        let can_dispatch = p.may(Action::ReportDispatch, &r.path);
        let unit = store.report_unit(&r).await?;
        let can_handle = p.may(Action::ReportHandle, &r.path)
            && (can_dispatch
                || unit
                    .as_ref()
                    .is_some_and(|u| acts_for(p, &u.id, &u.kind, &u.place_id, &u.path)));
        let is_reporter = r.reporter_user_id.as_deref() == Some(p.user_id())
            || r.household_id
                .as_ref()
                .is_some_and(|h| viewer.households.contains(h));
        Ok(Act {
            store,
            p,
            viewer,
            from: parse_status(&r.status),
            r,
            now: store.now_ms(),
            notes,
            unit,
            can_dispatch,
            can_handle,
            is_reporter,
            name,
        })
    }

    /// 403 unless `ok`.
    pub fn need(&self, ok: bool) -> AppResult<()> {
        if ok {
            Ok(())
        } else {
            Err(AppError::forbidden())
        }
    }

    /// The 409 for an action this status does not allow (for steps that do not move the
    /// status, which the state machine does not see).
    pub fn illegal(&self) -> AppError {
        transition_error(TransitionError::Illegal {
            from: self.from,
            action: self.name,
        })
    }

    /// Open the transaction and write the row: re-read it, check its version, move the status
    /// through the state machine, apply `change` with the version guard.
    pub async fn write(&self, change: Change) -> AppResult<Written<'_>> {
        let id = self.r.id.as_str();
        let mut tx = self.store.db.begin_write().await.map_err(db_err)?;
        // Re-read inside the transaction: the version guards against a concurrent change.
        let cur = report_in_tx(&mut tx, id).await?.ok_or_else(not_found)?;
        if cur.version != self.r.version {
            return Err(lost_race(self.name));
        }
        let to = match &change.transition {
            Some(t) => {
                let open = open_summons(&mut tx, id).await?;
                state::next(self.from, t, &context_of(&self.r, self.now, open))
                    .map_err(transition_error)?
            }
            None => self.from,
        };
        let mut q = Sql::new("UPDATE reports SET status = ");
        q.bind(status_str(to));
        q.push(", version = version + 1, updated_at = ")
            .bind(self.now);
        for (c, v) in change.sets {
            q.push(", ").push(c).push(" = ").bind(v);
        }
        q.push(" WHERE id = ")
            .bind(id)
            .push(" AND version = ")
            .bind(self.r.version);
        if change.only_if_unassigned {
            q.push(" AND assignee_user_id IS NULL");
        }
        let n = q
            .query()
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n != 1 {
            return Err(lost_race(self.name));
        }
        Ok(Written {
            tx,
            act: self,
            to,
            data: change.data,
            tells: Vec::new(),
            recorded: false,
        })
    }
}

/// What an action changes on the report row: the state-machine edge (none for steps that keep
/// the status), the columns, and the event's data.
pub(crate) struct Change {
    pub transition: Option<Transition>,
    pub sets: Vec<(&'static str, Val)>,
    pub data: Value,
    /// 抢单: the row is written only while nobody holds it.
    pub only_if_unassigned: bool,
}

impl Change {
    /// A change along a state-machine edge.
    pub fn along(t: Transition) -> Change {
        Change {
            transition: Some(t),
            ..Change::keep()
        }
    }

    /// A step that keeps the status.
    pub fn keep() -> Change {
        Change {
            transition: None,
            sets: Vec::new(),
            data: json!({}),
            only_if_unassigned: false,
        }
    }

    pub fn set(&mut self, column: &'static str, v: impl Into<Val>) -> &mut Change {
        self.sets.push((column, v.into()));
        self
    }

    pub fn data(mut self, data: Value) -> Change {
        self.data = data;
        self
    }

    /// A new unit starts afresh: nobody assigned.
    pub fn clear_assignment(&mut self) {
        self.set("assignee_user_id", Val::NullText);
        self.set("assigned_at", Val::NullInt);
    }

    /// … and no price agreed.
    pub fn clear_quote(&mut self) {
        self.set("quote_fen", Val::NullInt);
        self.set("quote_note", Val::NullText);
        self.set("quote_status", Val::NullText);
        self.set("quoted_at", Val::NullInt);
    }
}

/// Who is told, with which message (and any arguments besides the title and status).
struct Tell {
    to: Vec<String>,
    key: &'static str,
    args: Value,
}

/// The row is written and the transaction open: side rows, notices, then [`Written::commit`].
pub(crate) struct Written<'a> {
    tx: Transaction<'static, Any>,
    act: &'a Act<'a>,
    /// The status after the action.
    pub to: Status,
    /// The event's data (still open to additions until the event is recorded).
    pub data: Value,
    tells: Vec<Tell>,
    recorded: bool,
}

/// Proof that an action went through the frame to its commit.
pub(crate) struct Done(());

impl Written<'_> {
    pub fn tx(&mut self) -> &mut Transaction<'static, Any> {
        &mut self.tx
    }

    /// Tell these people (the caller is left out) with the notice `key`.
    pub fn tell(&mut self, to: Vec<String>, key: &'static str) {
        self.tell_with(to, key, json!({}));
    }

    /// [`Written::tell`] with more arguments for the message (an object).
    pub fn tell_with(&mut self, to: Vec<String>, key: &'static str, args: Value) {
        self.tells.push(Tell { to, key, args });
    }

    /// The reporter and the resident accounts of the report's household.
    pub async fn reporters(&mut self) -> AppResult<Vec<String>> {
        self.act
            .store
            .report_reporters(&mut self.tx, &self.act.r)
            .await
    }

    /// The dispatchers of the report's place.
    pub async fn dispatchers(&mut self) -> AppResult<Vec<String>> {
        self.act
            .store
            .report_dispatchers(&mut self.tx, &self.act.r.path)
            .await
    }

    /// The people of a unit.
    pub async fn members(&mut self, u: &Unit) -> AppResult<Vec<String>> {
        self.act.store.unit_members(&mut self.tx, u).await
    }

    /// Tell the people of the unit handling the report, if one does.
    pub async fn tell_unit(&mut self, key: &'static str) -> AppResult<()> {
        if let Some(u) = &self.act.unit {
            let members = self.act.store.unit_members(&mut self.tx, u).await?;
            self.tell(members, key);
        }
        Ok(())
    }

    /// Write the event row and the audit entry (once; [`Written::commit`] does it if the
    /// action did not need to earlier).
    pub async fn record(&mut self) -> AppResult<()> {
        if self.recorded {
            return Ok(());
        }
        let a = self.act;
        let r = &a.r;
        let actor = Actor::from(a.p);
        insert_event(
            &mut self.tx,
            &r.id,
            a.name,
            Some(status_str(a.from)),
            status_str(self.to),
            &actor,
            a.now,
            a.notes.public.as_deref(),
            a.notes.internal.as_deref(),
            self.data.clone(),
        )
        .await?;
        let audit_action = format!("report.{}", a.name);
        audit::append(
            &mut self.tx,
            a.now,
            &actor,
            Entry {
                action: &audit_action,
                entity: "report",
                entity_id: &r.id,
                path: Some(&r.path),
                purpose: None,
                before: Some(
                    json!({ "status": status_str(a.from), "unit_id": r.unit_id, "assignee_user_id": r.assignee_user_id }),
                ),
                after: Some(json!({ "status": status_str(self.to), "data": self.data })),
            },
        )
        .await?;
        self.recorded = true;
        Ok(())
    }

    /// Record (if not yet), send the notices, commit.
    pub async fn commit(mut self) -> AppResult<Done> {
        self.record().await?;
        let a = self.act;
        let r = &a.r;
        let link = format!("/reports/{}", r.id);
        let kind = format!("report.{}", a.name);
        for t in std::mem::take(&mut self.tells) {
            let recipients: Vec<String> =
                t.to.into_iter().filter(|u| *u != a.p.user_id()).collect();
            let mut args = json!({ "title": r.title, "status": status_str(self.to) });
            if let (Some(all), Some(more)) = (args.as_object_mut(), t.args.as_object()) {
                all.extend(more.clone());
            }
            a.store
                .notify(
                    &mut self.tx,
                    &recipients,
                    &Notice {
                        kind: &kind,
                        key: t.key,
                        args,
                        entity: "report",
                        entity_id: &r.id,
                        path: Some(&r.path),
                        link: Some(&link),
                    },
                )
                .await?;
        }
        self.tx.commit().await.map_err(db_err)?;
        Ok(Done(()))
    }
}

async fn report_in_tx(tx: &mut Transaction<'static, Any>, id: &str) -> AppResult<Option<Report>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REPORT_COLS} {REPORT_FROM} WHERE r.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(r.as_ref().map(report_from_row))
}

/// Units summoned by 吹哨 that have not replied (the state machine's 事不完人不撤 guard).
async fn open_summons(tx: &mut Transaction<'static, Any>, id: &str) -> AppResult<usize> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM report_summons WHERE report_id = $1 AND replied_at IS NULL",
    )
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(i64_(&r, "n") as usize)
}

/// A refusal of the state machine as a 409 with its code.
pub(crate) fn transition_error(e: TransitionError) -> AppError {
    match e {
        TransitionError::SummonsOutstanding(n) => {
            AppError::conflict(e.code()).arg("count", n.to_string())
        }
        TransitionError::Illegal { from, action } => AppError::conflict(e.code())
            .details(json!({ "status": status_str(from), "action": action })),
        _ => AppError::conflict(e.code()),
    }
}

/// The answer when the row changed under the caller: for a grab, the localized "someone else
/// took it"; otherwise the generic version conflict.
fn lost_race(action: &str) -> AppError {
    if action == "grab" {
        AppError::conflict("report.already_taken")
    } else {
        AppError::conflict("conflict")
    }
}

/// Whether the principal works for `unit`: bound to the organisation, or (committees) bound
/// inside its community with a role that handles reports.
pub fn acts_for(
    p: &Principal,
    unit_id: &str,
    unit_kind: &str,
    unit_place_id: &str,
    unit_path: &str,
) -> bool {
    if p.token().is_some() && p.grant(Action::ReportHandle).is_err() {
        return false;
    }
    p.bindings().iter().any(|b| {
        b.carries(Action::ReportHandle)
            && (b.node_id() == unit_id
                || (unit_kind == "committee"
                    && (b.node_id() == unit_place_id
                        || b.prefixes().iter().any(|px| px.starts_with(unit_path)))))
    })
}

/// One row of a report's history (also written by the deadline job).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    report_id: &str,
    action: &str,
    from: Option<&str>,
    to: &str,
    actor: &Actor,
    at: i64,
    public_note: Option<&str>,
    internal_note: Option<&str>,
    data: Value,
) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO report_events (id, report_id, action, from_status, to_status, actor_id, actor, at, public_note, internal_note, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.clone())
    .bind(report_id.to_string())
    .bind(action.to_string())
    .bind(from.map(str::to_string))
    .bind(to.to_string())
    .bind(actor.id.clone())
    .bind(actor.name.clone())
    .bind(at)
    .bind(public_note.map(str::to_string))
    .bind(internal_note.map(str::to_string))
    .bind(data.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(id)
}

/// Whether the resolve-by deadline was missed, frozen at close.
pub(crate) fn late_at_close(r: &Report) -> bool {
    r.overdue_resolve
        || match (r.replied_at, r.resolve_by) {
            (Some(rep), Some(due)) => rep > due,
            _ => false,
        }
}
