//! IoT storage (物联感知): the device registry, telemetry in batches, alarm rules, alarms with
//! their lifecycle and escalation, and the SOS 一键通 care chains. The ingest runtime (broker,
//! batch writer, rule engine) lives in the `linli-iot` crate and calls in here.

pub mod alarms;
pub mod demo;
pub mod devices;
pub mod record;
pub mod rule_state;
pub mod rules;
pub mod schema;
pub mod sos;
pub mod telemetry;

use std::future::Future;
use std::pin::Pin;

use linli_core::AppResult;

/// What an alarm rule asks of the reports module: open a repair report for the responsible unit.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Routing category of the reports catalogue, e.g. `public_facility`.
    pub category: String,
    /// Where: the device's place path (the reports module routes by it).
    pub place_path: String,
    pub place_id: String,
    /// Text for the report (alarm type, device, values).
    pub description: String,
    /// The alarm that asked for it.
    pub alarm_id: String,
}

/// Implemented by the reports module (issue #4) to turn an alarm into a report. Returns the new
/// report's id, which is stored on the alarm. Called after the alarm has been committed; a
/// failure is logged and recorded on the alarm, never loses the alarm.
pub trait ReportOpener: Send + Sync {
    fn open<'a>(
        &'a self,
        req: ReportRequest,
    ) -> Pin<Box<dyn Future<Output = AppResult<String>> + Send + 'a>>;
}
