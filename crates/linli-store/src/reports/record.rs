//! The reports' section of the household record: reports filed by or for the household, as the
//! caller's report viewer sees them (a property company's staff see only the reports their unit
//! handles here, too).

use serde::Serialize;
use serde_json::Value;

use linli_core::auth::Action;
use linli_core::{AppResult, BoxFuture};

use crate::Store;
use crate::registry::dossier::{RecordCtx, RecordSection};
use crate::reports::queries::ReportQuery;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedReport {
    pub id: String,
    pub kind: String,
    pub category: String,
    pub title: String,
    pub status: String,
    pub unit_name: Option<String>,
    pub created_at: i64,
}

/// Reports filed by or for the household, newest first (at most 50).
pub static REPORTS: RecordSection = RecordSection {
    key: "reports",
    action: Action::ReportRead,
    load: load_reports,
};

fn load_reports<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let viewer = store.report_viewer(ctx.principal).await?;
        let page = store
            .reports(
                &viewer,
                &ReportQuery {
                    household_id: Some(ctx.household_id.to_string()),
                    limit: Some(50),
                    ..Default::default()
                },
            )
            .await?;
        let items: Vec<LinkedReport> = page
            .items
            .into_iter()
            .map(|r| LinkedReport {
                id: r.id,
                kind: r.kind,
                category: r.category,
                title: r.title,
                status: r.status,
                unit_name: r.unit_name,
                created_at: r.created_at,
            })
            .collect();
        Ok(serde_json::to_value(items).unwrap_or_default())
    })
}
