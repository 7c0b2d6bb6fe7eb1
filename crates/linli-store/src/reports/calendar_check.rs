//! Is the working-day calendar complete enough? Deadlines counted in working days need the
//! current and the next year's official arrangement (调休); without it they fall back to clock
//! days. This check is cheap (one small query, no logging) so `/readyz`, `/metrics`, the start
//! of `linli serve` and the staff report pages can all say so loudly.

use linli_core::AppResult;
use linli_core::reports::calendar::OFFICIAL;

use crate::Store;
use crate::db::{db_err, i64_};

impl Store {
    /// The current and the next year (store clock, in its time zone) that the calendar lacks, in
    /// order; empty when both are there.
    pub async fn calendar_missing_years(&self) -> AppResult<Vec<i32>> {
        let mut years = self.calendar_year_list().await?;
        // The official years built into Linli are written on first use of the calendar.
        if OFFICIAL.iter().any(|y| !years.contains(&y.year)) {
            self.work_calendar().await?;
            years = self.calendar_year_list().await?;
        }
        let this_year = self.clock.zone().year(self.now_ms());
        Ok([this_year, this_year + 1]
            .into_iter()
            .filter(|y| !years.contains(y))
            .collect())
    }

    async fn calendar_year_list(&self) -> AppResult<Vec<i32>> {
        let rows = sqlx::query("SELECT year FROM calendar_years")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .filter_map(|r| i32::try_from(i64_(r, "year")).ok())
            .collect())
    }
}
