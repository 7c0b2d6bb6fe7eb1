//! Alarms that become reports: the reports module's side of `iot::ReportOpener`. An alarm rule
//! with `open_report` (e.g. a displaced manhole cover) files a report through the ordinary
//! intake — routed by the catalogue to the responsible unit, with its deadlines — on channel
//! `iot`, filed by the platform itself.

use std::future::Future;
use std::pin::Pin;

use linli_core::AppResult;
use linli_core::auth::Principal;

use crate::Store;
use crate::iot::{ReportOpener, ReportRequest};
use crate::reports::intake::NewReport;

/// Opens reports for alarms.
pub struct AlarmReports {
    store: Store,
}

impl AlarmReports {
    pub fn new(store: Store) -> AlarmReports {
        AlarmReports { store }
    }
}

impl ReportOpener for AlarmReports {
    fn open<'a>(
        &'a self,
        req: ReportRequest,
    ) -> Pin<Box<dyn Future<Output = AppResult<String>> + Send + 'a>> {
        Box::pin(async move {
            let created = self
                .store
                .create_report(
                    &Principal::system("iot-alarm"),
                    NewReport {
                        category: req.category,
                        title: None,
                        description: format!("{} (告警 / alarm {})", req.description, req.alarm_id),
                        place_id: Some(req.place_id),
                        lat: None,
                        lon: None,
                        plan_x: None,
                        plan_y: None,
                        anonymous: false,
                        public: false,
                        channel: Some("iot".into()),
                        household_id: None,
                    },
                )
                .await?;
            Ok(created.report.id)
        })
    }
}
