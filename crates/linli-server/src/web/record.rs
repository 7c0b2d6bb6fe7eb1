//! The household record (一户一表) on a page: every module's sections the viewer may read, as
//! tables (`templates/record.html`).

use linli_core::AppResult;
use linli_core::auth::Principal;

use crate::AppState;
use crate::manifest::Cell;
use crate::web::Page;

/// One section, ready for the template.
pub struct RecordTable {
    pub key: &'static str,
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// The sections of household `id` the caller may read; `staff` links to the staff pages.
pub async fn record_tables(
    s: &AppState,
    page: &Page,
    p: &Principal,
    id: &str,
    staff: bool,
) -> AppResult<Vec<RecordTable>> {
    let views: Vec<_> = crate::modules::ALL
        .iter()
        .flat_map(|m| m.record.iter())
        .collect();
    let sections: Vec<_> = views.iter().map(|v| v.section).collect();
    let record = s.store.household_record(p, id, &sections).await?;
    Ok(views
        .into_iter()
        .filter_map(|v| {
            record.get(v.section.key).map(|items| RecordTable {
                key: v.section.key,
                title: page.t(v.title),
                headers: v.headers.iter().map(|h| page.t(h)).collect(),
                rows: (v.rows)(page, items, staff),
            })
        })
        .collect())
}
