//! Intake decisions of the dispatchers: accept (受理), reject (不予受理; a duplicate is merged
//! into the report it repeats) and moderate (publish to neighbours, 审核后展示).

use serde_json::json;

use linli_core::reports::state::{RejectReason, Transition};
use linli_core::{AppError, AppResult};

use crate::db::{db_err, str_};

use super::command::RejectAs;
use super::frame::{Act, Change, Done, Written};

/// submitted → accepted. Dispatchers only; the reporters are told.
pub(super) async fn accept(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let mut c = Change::along(Transition::Accept);
    c.set("accepted_at", a.now);
    let mut w = a.write(c).await?;
    let reporters = w.reporters().await?;
    w.tell(reporters, "notice-report-accepted");
    w.commit().await
}

/// submitted → closed, with the reason. A duplicate must name another open report the caller
/// can see; the reporter and supporters then back that report (merge).
pub(super) async fn reject(a: &Act<'_>, why: RejectAs) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let reason = match why {
        RejectAs::OutOfScope => RejectReason::OutOfScope,
        RejectAs::Answered => RejectReason::Answered,
        RejectAs::DuplicateOf(dup) => RejectReason::DuplicateOf {
            report_id: open_duplicate_target(a, &dup).await?,
        },
    };
    let mut c = Change::along(Transition::Reject {
        reason: reason.clone(),
    });
    if let RejectReason::DuplicateOf { report_id } = &reason {
        c.set("duplicate_of", report_id.clone());
    }
    c.set(
        "reject_reason",
        serde_json::to_string(&reason).unwrap_or_default(),
    );
    c.set("closed_at", a.now);
    let mut w = a.write(c.data(json!({ "reason": reason }))).await?;
    if let RejectReason::DuplicateOf { report_id } = &reason {
        merge_into(&mut w, a, report_id).await?;
    }
    let reporters = w.reporters().await?;
    w.tell(reporters, "notice-report-rejected");
    w.commit().await
}

/// The report a duplicate is merged into: another open report the caller can see.
async fn open_duplicate_target(a: &Act<'_>, dup: &str) -> AppResult<String> {
    if dup == a.r.id {
        return Err(AppError::required("duplicate_of"));
    }
    match a.store.report_unscoped(dup).await? {
        Some(t) if t.status != "closed" && a.store.report_visible(&a.viewer, &t).await? => Ok(t.id),
        _ => Err(AppError::bad_request("validation.bad_value").arg("field", "duplicate_of")),
    }
}

/// The reporter and the supporters of the rejected report back the surviving one.
async fn merge_into(w: &mut Written<'_>, a: &Act<'_>, survivor: &str) -> AppResult<()> {
    let id = a.r.id.clone();
    let now = a.now;
    let mut backers: Vec<String> = a.r.reporter_user_id.iter().cloned().collect();
    let tx = w.tx();
    let rows = sqlx::query("SELECT user_id FROM report_supporters WHERE report_id = $1")
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
    backers.extend(rows.iter().map(|x| str_(x, "user_id")));
    for b in backers {
        let exists = sqlx::query(
            "SELECT 1 AS x FROM report_supporters WHERE report_id = $1 AND user_id = $2",
        )
        .bind(survivor.to_string())
        .bind(b.clone())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
        if exists.is_none() {
            sqlx::query(
                "INSERT INTO report_supporters (report_id, user_id, created_at) VALUES ($1, $2, $3)",
            )
            .bind(survivor.to_string())
            .bind(b)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
    }
    // The survivor must still be open now (it was when the request was read): merging into a
    // report closed meanwhile would leave both closed and the backers nowhere.
    let n = sqlx::query("UPDATE reports SET supporters = (SELECT COUNT(*) FROM report_supporters s WHERE s.report_id = reports.id), version = version + 1, updated_at = $2 WHERE id = $1 AND status <> 'closed'")
        .bind(survivor.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    if n != 1 {
        return Err(AppError::bad_request("validation.bad_value").arg("field", "duplicate_of"));
    }
    Ok(())
}

/// Show the report to neighbours, or stop showing it. Never a complaint, and only when the
/// reporter agreed.
pub(super) async fn moderate(a: &Act<'_>, public: bool) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    if public && a.r.kind == "complaint" {
        return Err(AppError::bad_request("report.complaint_never_public"));
    }
    if public && !a.r.public_requested {
        return Err(AppError::bad_request("report.public_not_requested"));
    }
    let mut c = Change::keep();
    c.set("public_approved", i64::from(public));
    a.write(c.data(json!({ "public": public })))
        .await?
        .commit()
        .await
}
