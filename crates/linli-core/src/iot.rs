//! IoT domain rules (物联感知): device kinds, payloads, alarm severities and the pure alarm-rule
//! evaluation. No I/O: the runtime in `linli-iot` keeps a [`RuleState`] per (device, rule) in
//! memory and feeds it points; the decisions (raise, clear) come from here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppError;

/// The kinds of device Linli knows. Rules are written per kind.
pub const DEVICE_KINDS: &[&str] = &[
    "smoke",
    "door",
    "manhole",
    "water_leak",
    "sos_button",
    "gate_face",
    "vehicle_camera",
    "thermometer",
    "water_meter",
    "power_meter",
];

pub fn valid_kind(kind: &str) -> bool {
    DEVICE_KINDS.contains(&kind)
}

/// Alarm severity (ThingsBoard's levels), most severe first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
    Indeterminate,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::Major => "MAJOR",
            Severity::Minor => "MINOR",
            Severity::Warning => "WARNING",
            Severity::Indeterminate => "INDETERMINATE",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::Major,
            Severity::Minor,
            Severity::Warning,
            Severity::Indeterminate,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
    /// 0 = most severe; used to sort alarm lists in SQL.
    pub fn rank(self) -> i64 {
        self as i64
    }
}

/// A comparison of one telemetry key against constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Gt,
    Lt,
    Eq,
    /// `value <= x <= value2`
    Between,
    /// `x < value || x > value2`
    Outside,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Condition {
    pub key: String,
    pub op: Op,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value2: Option<f64>,
}

impl Condition {
    /// The condition on a set of values; `None` when the key is absent or not a number
    /// (booleans count as 0/1).
    pub fn test(&self, values: &BTreeMap<String, Value>) -> Option<bool> {
        let x = number(values.get(&self.key)?)?;
        let hi = self.value2.unwrap_or(self.value);
        Some(match self.op {
            Op::Gt => x > self.value,
            Op::Lt => x < self.value,
            Op::Eq => (x - self.value).abs() < 1e-9,
            Op::Between => x >= self.value && x <= hi,
            Op::Outside => x < self.value || x > hi,
        })
    }

    fn validate(&self) -> Result<(), AppError> {
        if self.key.trim().is_empty() || self.key.len() > 64 {
            return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "key"));
        }
        if matches!(self.op, Op::Between | Op::Outside)
            && self.value2.is_none_or(|v2| v2 < self.value)
        {
            return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "value2"));
        }
        Ok(())
    }
}

/// A telemetry value as a number: numbers as they are, booleans as 0/1.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// What makes the alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// The condition holds for `hold_ms` (0 = at once) and in at least `count` points in a row
    /// (1 = the first point).
    Threshold {
        condition: Condition,
        #[serde(default)]
        hold_ms: i64,
        #[serde(default = "one")]
        count: u32,
    },
    /// No data for `period_ms` (a silent detector; no activity in an elderly person's home).
    NoData { period_ms: i64 },
    /// A device event of this type (e.g. `sos`, `tamper`, `cover_open`).
    Event { event: String },
}

fn one() -> u32 {
    1
}

/// When the rule is active: local minutes of the day `[start, end)` (wrapping past midnight
/// when start > end), in a fixed offset from UTC (China: +480). A schedule stored without an
/// offset is read in the default zone ([`crate::tz::Zone::SHANGHAI`]); the store writes the
/// configured zone's offset into the rules it creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub start_minute: u32,
    pub end_minute: u32,
    #[serde(default = "china_offset")]
    pub utc_offset_minutes: i32,
}

fn china_offset() -> i32 {
    crate::tz::Zone::SHANGHAI.offset_minutes()
}

impl Schedule {
    pub fn active_at(&self, ts_ms: i64) -> bool {
        let local_min =
            ((ts_ms / 60_000 + i64::from(self.utc_offset_minutes)).rem_euclid(1440)) as u32;
        if self.start_minute <= self.end_minute {
            local_min >= self.start_minute && local_min < self.end_minute
        } else {
            local_min >= self.start_minute || local_min < self.end_minute
        }
    }
}

/// One step of an escalation chain: after `after_ms` without acknowledgement, tell holders of
/// these roles over the alarm's place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EscalationStep {
    pub after_ms: i64,
    pub roles: Vec<crate::auth::Role>,
}

/// An alarm rule as stored (JSON) and edited through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleSpec {
    /// The alarm type raised, e.g. `smoke`, `cover_displaced`, `leak`, `offline`.
    pub alarm_type: String,
    pub severity: Severity,
    pub trigger: Trigger,
    /// Clears the alarm when true; without it, a threshold alarm clears when its condition no
    /// longer holds. No-data alarms clear when data arrives; event alarms are cleared by people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Escalation chain, cancelled by acknowledge or clear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalation: Vec<EscalationStep>,
    /// Open a report of this category when the alarm is raised (e.g. `public_facility`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_report: Option<String>,
}

impl RuleSpec {
    pub fn validate(&self) -> Result<(), AppError> {
        let t = self.alarm_type.trim();
        if t.is_empty()
            || t.len() > 64
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "alarm_type"));
        }
        match &self.trigger {
            Trigger::Threshold {
                condition,
                hold_ms,
                count,
            } => {
                condition.validate()?;
                if *hold_ms < 0 || *count == 0 {
                    return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "hold"));
                }
            }
            Trigger::NoData { period_ms } => {
                if *period_ms < 1_000 {
                    return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "period"));
                }
            }
            Trigger::Event { event } => {
                if event.trim().is_empty() {
                    return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "event"));
                }
            }
        }
        if let Some(c) = &self.clear {
            c.validate()?;
        }
        if let Some(s) = &self.schedule
            && (s.start_minute >= 1440 || s.end_minute > 1440)
        {
            return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "schedule"));
        }
        if self.escalation.iter().any(|s| s.after_ms < 0) {
            return Err(AppError::bad_request("iot.rule.invalid").arg("detail", "escalation"));
        }
        Ok(())
    }
}

/// The runtime state of one rule on one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    /// When the condition started holding (this run of true points).
    pub since: Option<i64>,
    /// Points in a row for which it held.
    pub run: u32,
    /// Whether this rule's alarm is active on the device.
    pub active: bool,
}

/// What the rule decided for a point.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Raise,
    Clear,
}

/// Feed one telemetry point to a threshold rule.
pub fn on_point(
    spec: &RuleSpec,
    st: &mut RuleState,
    ts: i64,
    values: &BTreeMap<String, Value>,
) -> Option<Decision> {
    let Trigger::Threshold {
        condition,
        hold_ms,
        count,
    } = &spec.trigger
    else {
        return None;
    };
    let held = condition.test(values)?;
    if st.active {
        let cleared = match &spec.clear {
            Some(c) => c.test(values).unwrap_or(false),
            None => !held,
        };
        if cleared {
            *st = RuleState::default();
            return Some(Decision::Clear);
        }
        return None;
    }
    if !held {
        st.since = None;
        st.run = 0;
        return None;
    }
    let since = *st.since.get_or_insert(ts);
    st.run = st.run.saturating_add(1);
    let in_schedule = spec.schedule.as_ref().is_none_or(|s| s.active_at(ts));
    if in_schedule && st.run >= *count && ts - since >= *hold_ms {
        st.active = true;
        return Some(Decision::Raise);
    }
    None
}

/// Whether a no-data rule fires: nothing seen since `last_seen` for longer than the period
/// (inside the schedule, if any).
pub fn silent(spec: &RuleSpec, last_seen: i64, now: i64) -> bool {
    let Trigger::NoData { period_ms } = &spec.trigger else {
        return false;
    };
    now - last_seen > *period_ms && spec.schedule.as_ref().is_none_or(|s| s.active_at(now))
}

/// Whether a device event matches an event rule.
pub fn on_event(spec: &RuleSpec, ts: i64, event_type: &str) -> bool {
    matches!(&spec.trigger, Trigger::Event { event } if event == event_type)
        && spec.schedule.as_ref().is_none_or(|s| s.active_at(ts))
}

/// A parsed telemetry payload `{"ts": <ms>, "values": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub ts: Option<i64>,
    pub values: BTreeMap<String, Value>,
}

/// A parsed event payload `{"ts": <ms>, "type": "...", ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: Option<i64>,
    pub kind: String,
    pub body: Value,
}

/// Why a message was dropped; also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    BadJson,
    BadPayload,
    UnknownDevice,
    BadToken,
    WrongTopic,
    TooLarge,
    Overload,
}

impl Drop {
    pub const ALL: [Drop; 7] = [
        Drop::BadJson,
        Drop::BadPayload,
        Drop::UnknownDevice,
        Drop::BadToken,
        Drop::WrongTopic,
        Drop::TooLarge,
        Drop::Overload,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::BadJson => "bad_json",
            Drop::BadPayload => "bad_payload",
            Drop::UnknownDevice => "unknown_device",
            Drop::BadToken => "bad_token",
            Drop::WrongTopic => "wrong_topic",
            Drop::TooLarge => "too_large",
            Drop::Overload => "overload",
        }
    }
    /// The API error code for HTTP ingest.
    pub fn code(self) -> &'static str {
        match self {
            Drop::BadJson => "iot.bad_json",
            Drop::BadPayload => "iot.bad_payload",
            Drop::UnknownDevice | Drop::BadToken => "iot.bad_token",
            Drop::WrongTopic => "iot.wrong_topic",
            Drop::TooLarge => "iot.too_large",
            Drop::Overload => "iot.overload",
        }
    }
}

/// At most this many values in one telemetry message.
pub const MAX_VALUES: usize = 64;

pub fn parse_telemetry(bytes: &[u8]) -> Result<Telemetry, Drop> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| Drop::BadJson)?;
    let Value::Object(mut o) = v else {
        return Err(Drop::BadPayload);
    };
    let ts = parse_ts(o.get("ts"))?;
    let Some(Value::Object(values)) = o.remove("values") else {
        return Err(Drop::BadPayload);
    };
    if values.is_empty() || values.len() > MAX_VALUES {
        return Err(Drop::BadPayload);
    }
    let mut out = BTreeMap::new();
    for (k, v) in values {
        if k.is_empty()
            || k.len() > 64
            || !matches!(v, Value::Number(_) | Value::Bool(_) | Value::String(_))
        {
            return Err(Drop::BadPayload);
        }
        out.insert(k, v);
    }
    Ok(Telemetry { ts, values: out })
}

pub fn parse_event(bytes: &[u8]) -> Result<Event, Drop> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| Drop::BadJson)?;
    let Value::Object(o) = &v else {
        return Err(Drop::BadPayload);
    };
    let ts = parse_ts(o.get("ts"))?;
    let kind = match o.get("type") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => s.clone(),
        _ => return Err(Drop::BadPayload),
    };
    Ok(Event { ts, kind, body: v })
}

fn parse_ts(v: Option<&Value>) -> Result<Option<i64>, Drop> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            // Between 2001 and 2286: milliseconds, not seconds.
            Some(t) if (1_000_000_000_000..10_000_000_000_000).contains(&t) => Ok(Some(t)),
            _ => Err(Drop::BadPayload),
        },
        _ => Err(Drop::BadPayload),
    }
}

/// Split `linli/{device_id}/{telemetry|event}`.
pub fn parse_topic(topic: &str) -> Option<(&str, &str)> {
    let mut it = topic.split('/');
    let (Some("linli"), Some(id), Some(kind), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return None;
    };
    if id.is_empty() || !matches!(kind, "telemetry" | "event") {
        return None;
    }
    Some((id, kind))
}

/// MQTT topic filter matching with `+` and `#`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vals(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    fn threshold(op: Op, value: f64, hold_ms: i64, count: u32) -> RuleSpec {
        RuleSpec {
            alarm_type: "hot".into(),
            severity: Severity::Major,
            trigger: Trigger::Threshold {
                condition: Condition {
                    key: "t".into(),
                    op,
                    value,
                    value2: None,
                },
                hold_ms,
                count,
            },
            clear: None,
            schedule: None,
            escalation: vec![],
            open_report: None,
        }
    }

    #[test]
    fn threshold_raises_at_once_and_clears_when_false() {
        let r = threshold(Op::Gt, 50.0, 0, 1);
        let mut st = RuleState::default();
        assert_eq!(on_point(&r, &mut st, 1, &vals(json!({"t": 40}))), None);
        assert_eq!(
            on_point(&r, &mut st, 2, &vals(json!({"t": 60}))),
            Some(Decision::Raise)
        );
        assert_eq!(on_point(&r, &mut st, 3, &vals(json!({"t": 70}))), None);
        assert_eq!(
            on_point(&r, &mut st, 4, &vals(json!({"t": 10}))),
            Some(Decision::Clear)
        );
        // A point without the key decides nothing.
        assert_eq!(on_point(&r, &mut st, 5, &vals(json!({"x": 99}))), None);
    }

    #[test]
    fn hold_duration_and_count_in_a_row() {
        let r = threshold(Op::Gt, 50.0, 10_000, 3);
        let mut st = RuleState::default();
        let hot = vals(json!({"t": 60}));
        assert_eq!(on_point(&r, &mut st, 0, &hot), None);
        assert_eq!(on_point(&r, &mut st, 5_000, &hot), None);
        // three in a row but only 9 s held
        assert_eq!(on_point(&r, &mut st, 9_000, &hot), None);
        assert_eq!(on_point(&r, &mut st, 10_000, &hot), Some(Decision::Raise));
        // a cold point resets the run
        let mut st = RuleState::default();
        on_point(&r, &mut st, 0, &hot);
        on_point(&r, &mut st, 1, &vals(json!({"t": 1})));
        assert_eq!(on_point(&r, &mut st, 20_000, &hot), None);
        assert_eq!(st.run, 1);
    }

    #[test]
    fn separate_clear_condition_gives_hysteresis() {
        let mut r = threshold(Op::Gt, 50.0, 0, 1);
        r.clear = Some(Condition {
            key: "t".into(),
            op: Op::Lt,
            value: 40.0,
            value2: None,
        });
        let mut st = RuleState::default();
        assert_eq!(
            on_point(&r, &mut st, 1, &vals(json!({"t": 55}))),
            Some(Decision::Raise)
        );
        assert_eq!(on_point(&r, &mut st, 2, &vals(json!({"t": 45}))), None);
        assert_eq!(
            on_point(&r, &mut st, 3, &vals(json!({"t": 39}))),
            Some(Decision::Clear)
        );
    }

    #[test]
    fn ranges_booleans_and_schedule() {
        let c = Condition {
            key: "v".into(),
            op: Op::Outside,
            value: 10.0,
            value2: Some(20.0),
        };
        assert_eq!(c.test(&vals(json!({"v": 5}))), Some(true));
        assert_eq!(c.test(&vals(json!({"v": 15}))), Some(false));
        assert_eq!(c.test(&vals(json!({"v": "x"}))), None);
        let b = Condition {
            key: "open".into(),
            op: Op::Eq,
            value: 1.0,
            value2: None,
        };
        assert_eq!(b.test(&vals(json!({"open": true}))), Some(true));
        // 22:00–06:00 China time
        let s = Schedule {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
            utc_offset_minutes: 480,
        };
        let utc_hour = |h: i64| h * 3_600_000;
        assert!(s.active_at(utc_hour(15))); // 23:00 local
        assert!(!s.active_at(utc_hour(4))); // 12:00 local
        let mut r = threshold(Op::Gt, 0.5, 0, 1);
        r.schedule = Some(s);
        let mut st = RuleState::default();
        assert_eq!(
            on_point(&r, &mut st, utc_hour(4), &vals(json!({"t": 1}))),
            None
        );
        assert_eq!(
            on_point(&r, &mut st, utc_hour(15), &vals(json!({"t": 1}))),
            Some(Decision::Raise)
        );
    }

    #[test]
    fn no_data_and_events() {
        let r = RuleSpec {
            trigger: Trigger::NoData { period_ms: 60_000 },
            ..threshold(Op::Gt, 0.0, 0, 1)
        };
        assert!(!silent(&r, 0, 60_000));
        assert!(silent(&r, 0, 60_001));
        let e = RuleSpec {
            trigger: Trigger::Event {
                event: "sos".into(),
            },
            ..threshold(Op::Gt, 0.0, 0, 1)
        };
        assert!(on_event(&e, 0, "sos"));
        assert!(!on_event(&e, 0, "tamper"));
    }

    #[test]
    fn validation_refuses_bad_rules() {
        let mut r = threshold(Op::Between, 1.0, 0, 1);
        assert!(r.validate().is_err());
        r.trigger = Trigger::Threshold {
            condition: Condition {
                key: "t".into(),
                op: Op::Between,
                value: 1.0,
                value2: Some(2.0),
            },
            hold_ms: 0,
            count: 1,
        };
        assert!(r.validate().is_ok());
        r.alarm_type = "bad type!".into();
        assert!(r.validate().is_err());
    }

    #[test]
    fn payloads_and_topics() {
        let t =
            parse_telemetry(br#"{"ts": 1764000000000, "values": {"t": 1.5, "on": true}}"#).unwrap();
        assert_eq!(t.ts, Some(1_764_000_000_000));
        assert_eq!(t.values.len(), 2);
        assert_eq!(parse_telemetry(b"{nope"), Err(Drop::BadJson));
        assert_eq!(parse_telemetry(br#"{"values": {}}"#), Err(Drop::BadPayload));
        assert_eq!(
            parse_telemetry(br#"{"ts": 17, "values": {"t": 1}}"#),
            Err(Drop::BadPayload)
        );
        assert_eq!(
            parse_telemetry(br#"{"values": {"t": {"nested": 1}}}"#),
            Err(Drop::BadPayload)
        );
        let e = parse_event(br#"{"type": "sos"}"#).unwrap();
        assert_eq!(e.kind, "sos");
        assert!(parse_event(br#"{"ts": 1}"#).is_err());
        assert_eq!(parse_topic("linli/d1/telemetry"), Some(("d1", "telemetry")));
        assert_eq!(parse_topic("linli/d1/other"), None);
        assert_eq!(parse_topic("linli//event"), None);
        assert!(topic_matches("linli/+/telemetry", "linli/a/telemetry"));
        assert!(topic_matches("linli/#", "linli/a/event"));
        assert!(!topic_matches("linli/+/event", "linli/a/telemetry"));
        assert!(!topic_matches("linli/+", "linli/a/event"));
    }
}
