//! The batch writer and rule engine: one task per instance collects messages for up to
//! `batch_ms` (or `batch_max` messages), locks their devices, reads their rule state, evaluates
//! the rules, commits telemetry, alarm changes and the new rule state in one transaction, then
//! acknowledges and publishes the alarm events. The rule state lives in storage
//! ([`rule_state`]): with an external broker one device's messages reach several instances.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use linli_core::AppResult;
use linli_core::iot::{Decision, Trigger, on_event, on_point, silent};
use linli_store::bus::BusEvent;
use linli_store::db::db_err;
use linli_store::iot::ReportRequest;
use linli_store::iot::alarms::{Chain, Raise, Tier, users_with_role_over};
use linli_store::iot::devices::DeviceAuth;
use linli_store::iot::rule_state;
use linli_store::iot::rules::{Rule, applicable};
use linli_store::iot::telemetry::{DeviceBatch, write_batches};

use crate::{Cmd, Iot, Job, Payload};

enum Action {
    Raise {
        device: Arc<DeviceAuth>,
        rule: Box<Rule>,
        details: Value,
    },
    Clear {
        device: Arc<DeviceAuth>,
        alarm_type: String,
    },
}

pub struct Writer {
    iot: Iot,
    rules: Vec<Rule>,
    /// device id → indexes of the rules that apply to it.
    applies: HashMap<String, Vec<usize>>,
    last_retention: i64,
    /// When this writer started (store clock): silence is counted from here at the earliest,
    /// so a restart after downtime does not flag every device that could not reach Linli.
    started: i64,
}

/// What one committed batch leaves to do after the commit.
struct Applied {
    events: Vec<BusEvent>,
    reports: Vec<ReportRequest>,
    sos: Vec<(Arc<DeviceAuth>, String)>,
    points: u64,
}

/// A failed batch is tried this many times in all (a deadlock or a dropped connection is
/// usually gone at the second try) before its messages are refused.
const ATTEMPTS: u32 = 3;

impl Writer {
    /// Load the rules. The rule engine's state lives in storage ([`rule_state`]), where every
    /// instance sees it.
    pub(crate) async fn load(iot: Iot) -> AppResult<Writer> {
        let rules = iot.store().rules_all().await?;
        let started = iot.store().now_ms();
        Ok(Writer {
            iot,
            rules,
            applies: HashMap::new(),
            last_retention: 0,
            started,
        })
    }

    fn rules_for(&mut self, d: &DeviceAuth) -> Vec<usize> {
        if let Some(v) = self.applies.get(&d.id) {
            return v.clone();
        }
        let picked: Vec<usize> = applicable(&self.rules, &d.id, &d.kind, &d.path)
            .into_iter()
            .filter_map(|r| self.rules.iter().position(|x| x.id == r.id))
            .collect();
        self.applies.insert(d.id.clone(), picked.clone());
        picked
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let cfg = self.iot.config().clone();
        let mut cmds: Vec<Cmd> = Vec::with_capacity(cfg.batch_max);
        loop {
            cmds.clear();
            if rx.recv_many(&mut cmds, cfg.batch_max).await == 0 {
                break;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(cfg.batch_ms);
            while cmds.len() < cfg.batch_max && !cmds.iter().any(|c| !matches!(c, Cmd::Msg(..))) {
                let room = cfg.batch_max - cmds.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut cmds, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let mut jobs = Vec::with_capacity(cmds.len());
            // The messages' share of the queue's byte budget, returned once the batch is done.
            let mut budget = Vec::with_capacity(cmds.len());
            let mut others = Vec::new();
            for c in cmds.drain(..) {
                match c {
                    Cmd::Msg(j, b) => {
                        jobs.push(j);
                        budget.push(b);
                    }
                    other => others.push(other),
                }
            }
            if !jobs.is_empty() {
                self.batch(jobs).await;
            }
            drop(budget);
            for c in others {
                match c {
                    Cmd::Tick(done) => {
                        if let Err(e) = self.tick().await {
                            tracing::warn!(error = %e, "iot tick");
                        }
                        let _ = done.send(());
                    }
                    Cmd::ReloadRules(done) => {
                        match self.iot.store().rules_all().await {
                            Ok(r) => {
                                self.rules = r;
                                self.applies.clear();
                            }
                            Err(e) => tracing::warn!(error = %e, "reloading rules"),
                        }
                        let _ = done.send(());
                    }
                    Cmd::Msg(..) => {}
                }
            }
        }
    }

    /// Commit a batch (trying again after a failure), then acknowledge its messages: as
    /// stored when it committed, as refused when every attempt failed.
    async fn batch(&mut self, jobs: Vec<Job>) {
        // The acknowledgements apart: the work is read across awaits (and must be `Sync`).
        let mut acks = Vec::with_capacity(jobs.len());
        let work: Vec<(Arc<DeviceAuth>, Payload)> = jobs
            .into_iter()
            .map(|j| {
                if let Some(a) = j.ack {
                    acks.push(a);
                }
                (j.device, j.payload)
            })
            .collect();
        let iot = self.iot.clone();
        let health = iot.health();
        health.busy();
        let mut result = self.apply(&work).await;
        for attempt in 1..ATTEMPTS {
            let Err(e) = &result else { break };
            tracing::warn!(error = %e, attempt, "telemetry batch failed; trying again");
            tokio::time::sleep(Duration::from_millis(50 << (2 * attempt))).await;
            result = self.apply(&work).await;
        }
        let ok = match result {
            Ok(done) => {
                health.committed();
                let stats = self.iot.stats();
                stats.stored.fetch_add(done.points, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("linli_iot_points_stored_total").increment(done.points);
                let now = self.iot.store().now_ms();
                for e in done.events {
                    if e.kind == "alarm.raised" {
                        let _ = self.iot.store().publish_alarm_inbox(&e.id, now).await;
                    }
                    self.iot.store().bus.publish(e);
                }
                self.open_reports(done.reports);
                // SOS needs the person's care chain: its own transaction, before the ack.
                for (device, person) in &done.sos {
                    if let Err(e) = self
                        .iot
                        .store()
                        .raise_sos(
                            person,
                            Some(&device.id),
                            "button",
                            &self.iot.config().safety,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, device = %device.id, "SOS from a button");
                    }
                }
                true
            }
            Err(e) => {
                health.failed();
                self.iot
                    .stats()
                    .failed_batches
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("linli_iot_batches_failed_total").increment(1);
                tracing::error!(error = %e, "telemetry batch failed {ATTEMPTS} times; not acknowledged");
                false
            }
        };
        for a in acks {
            a(ok);
        }
    }

    /// One attempt: lock the batch's devices, read their rule state, decide, and write the
    /// telemetry, the alarms and the new state in one transaction.
    async fn apply(&mut self, jobs: &[(Arc<DeviceAuth>, Payload)]) -> AppResult<Applied> {
        let store = self.iot.store().clone();
        let now = store.now_ms();
        let devices: BTreeSet<String> = jobs.iter().map(|(d, _)| d.id.clone()).collect();
        let mut tx = store.db.begin_write().await.map_err(db_err)?;
        rule_state::lock_devices(&mut tx, store.backend(), &devices).await?;
        let before = rule_state::load(&mut tx, store.backend(), &devices).await?;
        let mut state = before.clone();
        // Sorted by device: rows are written (and locked) in the same order by every batch.
        let mut groups: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        let mut actions = Vec::new();
        let mut sos = Vec::new();
        for (d, payload) in jobs {
            let d = d.clone();
            let rules = self.rules_for(&d);
            match payload {
                Payload::Telemetry(t) => {
                    let ts = t.ts.unwrap_or(now);
                    let vals = serde_json::to_string(&t.values).unwrap_or_else(|_| "{}".into());
                    groups.entry(d.id.clone()).or_default().push((ts, vals));
                    for i in &rules {
                        let rule = &self.rules[*i];
                        let st = state.entry((d.id.clone(), rule.id.clone())).or_default();
                        match &rule.spec.trigger {
                            Trigger::Threshold { .. } => {
                                match on_point(&rule.spec, st, ts, &t.values) {
                                    Some(Decision::Raise) => actions.push(Action::Raise {
                                        device: d.clone(),
                                        rule: Box::new(rule.clone()),
                                        details: serde_json::json!({ "ts": ts, "values": t.values }),
                                    }),
                                    Some(Decision::Clear) => actions.push(Action::Clear {
                                        device: d.clone(),
                                        alarm_type: rule.spec.alarm_type.clone(),
                                    }),
                                    None => {}
                                }
                            }
                            Trigger::NoData { .. } if st.active => {
                                st.active = false;
                                actions.push(Action::Clear {
                                    device: d.clone(),
                                    alarm_type: rule.spec.alarm_type.clone(),
                                });
                            }
                            _ => {}
                        }
                    }
                }
                Payload::Event(e) => {
                    let ts = e.ts.unwrap_or(now);
                    groups
                        .entry(d.id.clone())
                        .or_default()
                        .push((ts, e.body.to_string()));
                    if e.kind == "sos"
                        && let Some(p) = &d.person_id
                    {
                        sos.push((d.clone(), p.clone()));
                    }
                    for i in &rules {
                        let rule = &self.rules[*i];
                        let st = state.entry((d.id.clone(), rule.id.clone())).or_default();
                        if on_event(&rule.spec, ts, &e.kind) {
                            st.active = true;
                            actions.push(Action::Raise {
                                device: d.clone(),
                                rule: Box::new(rule.clone()),
                                details: e.body.clone(),
                            });
                        } else if matches!(rule.spec.trigger, Trigger::NoData { .. }) && st.active {
                            st.active = false;
                            actions.push(Action::Clear {
                                device: d.clone(),
                                alarm_type: rule.spec.alarm_type.clone(),
                            });
                        }
                    }
                }
            }
        }
        let batches: Vec<DeviceBatch> = groups
            .into_iter()
            .map(|(device_id, points)| DeviceBatch { device_id, points })
            .collect();
        write_batches(&mut tx, &batches, now).await?;
        let (events, reports) = act(&store, &mut tx, &actions, now).await?;
        rule_state::save(&mut tx, &before, &state).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Applied {
            events,
            reports,
            sos,
            points: jobs.len() as u64,
        })
    }

    fn open_reports(&self, reports: Vec<ReportRequest>) {
        if reports.is_empty() {
            return;
        }
        let opener = self.iot.report_opener();
        let store = self.iot.store().clone();
        tokio::spawn(async move {
            for req in reports {
                let alarm = req.alarm_id.clone();
                let result = match &opener {
                    Some(o) => o.open(req).await.map_err(|e| e.code.to_string()),
                    None => Err("no reports module".to_string()),
                };
                let r = match &result {
                    Ok(id) => store.alarm_report(&alarm, Ok(id)).await,
                    Err(why) => store.alarm_report(&alarm, Err(why)).await,
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "recording the report of an alarm");
                }
            }
        });
    }

    /// Timers: silent devices (no-data rules), escalations, missed check-ins, retention — on
    /// one instance at a time (the `iot-timers` lease; another takes over ten seconds after
    /// its holder stopped renewing). Each also claims its rows, so an overlap does no harm.
    async fn tick(&mut self) -> AppResult<()> {
        let store = self.iot.store().clone();
        if !store.claim_lease("iot-timers", 10_000).await? {
            return Ok(());
        }
        let now = store.now_ms();
        self.silent_devices(now).await?;
        store.escalate_due(now).await?;
        store.missed_checkins(&self.iot.config().safety).await?;
        // Retention at most once an hour.
        if now - self.last_retention > 3_600_000 {
            self.last_retention = now;
            let cfg = self.iot.config();
            let day = 86_400_000;
            store
                .telemetry_retention(
                    now - cfg.downsample_after_days * day,
                    now - cfg.retention_days * day,
                    20_000,
                )
                .await?;
        }
        Ok(())
    }

    /// Raise the no-data alarms of devices silent for longer than their rule's period. When a
    /// device was last seen is read from storage (`device_latest`, written by whichever
    /// instance received its data); a device never heard from counts from its registration,
    /// and none from before this writer started.
    async fn silent_devices(&mut self, now: i64) -> AppResult<()> {
        let no_data: Vec<(String, i64)> = self
            .rules
            .iter()
            .filter_map(|r| match r.spec.trigger {
                Trigger::NoData { period_ms } => Some((r.id.clone(), period_ms)),
                _ => None,
            })
            .collect();
        let Some(shortest) = no_data.iter().map(|(_, p)| *p).min() else {
            return Ok(());
        };
        let ids: Vec<String> = no_data.into_iter().map(|(id, _)| id).collect();
        let store = self.iot.store().clone();
        let mut candidates = Vec::new();
        if now - self.started <= shortest {
            return Ok(());
        }
        for (id, seen) in store.devices_silent_since(now - shortest, &ids).await? {
            let seen = seen.max(self.started);
            let Some(d) = self.iot.device(&id).await else {
                continue;
            };
            for i in self.rules_for(&d) {
                let rule = &self.rules[i];
                if matches!(rule.spec.trigger, Trigger::NoData { .. })
                    && silent(&rule.spec, seen, now)
                {
                    candidates.push((d.clone(), i, seen));
                }
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let devices: BTreeSet<String> = candidates.iter().map(|(d, _, _)| d.id.clone()).collect();
        let mut tx = store.db.begin_write().await.map_err(db_err)?;
        rule_state::lock_devices(&mut tx, store.backend(), &devices).await?;
        let state = rule_state::load(&mut tx, store.backend(), &devices).await?;
        let mut actions = Vec::new();
        for (d, i, seen) in candidates {
            let rule = &self.rules[i];
            let active = state
                .get(&(d.id.clone(), rule.id.clone()))
                .is_some_and(|s| s.active);
            if !active {
                actions.push(Action::Raise {
                    device: d,
                    rule: Box::new(rule.clone()),
                    details: serde_json::json!({ "last_seen": seen }),
                });
            }
        }
        let (events, reports) = act(&store, &mut tx, &actions, now).await?;
        tx.commit().await.map_err(db_err)?;
        for e in events {
            store.bus.publish(e);
        }
        self.open_reports(reports);
        Ok(())
    }
}

/// Raise and clear the alarms `actions` decided, inside the caller's transaction. Returns the
/// events to publish and the reports to open after commit.
async fn act(
    store: &linli_store::Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    actions: &[Action],
    now: i64,
) -> AppResult<(Vec<BusEvent>, Vec<ReportRequest>)> {
    let mut events = Vec::new();
    let mut reports = Vec::new();
    for a in actions {
        match a {
            Action::Raise {
                device,
                rule,
                details,
            } => {
                let mut tiers = Vec::new();
                for step in &rule.spec.escalation {
                    let mut users = Vec::new();
                    for role in &step.roles {
                        users.extend(users_with_role_over(tx, role, &device.path).await?);
                    }
                    tiers.push(Tier {
                        label: step
                            .roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        users,
                        delay_ms: step.after_ms,
                    });
                }
                let (id, new) = store
                    .raise_alarm(
                        tx,
                        &Raise {
                            originator: device.id.clone(),
                            device_id: Some(device.id.clone()),
                            person_id: device.person_id.clone(),
                            alarm_type: rule.spec.alarm_type.clone(),
                            severity: rule.spec.severity,
                            path: device.path.clone(),
                            place_id: device.place_id.clone(),
                            details: details.clone(),
                            rule_id: Some(rule.id.clone()),
                            chain: Chain {
                                tiers,
                                repeat_ms: None,
                            },
                            notice_kind: "alarm.raised",
                        },
                        now,
                    )
                    .await?;
                if new && let Some(category) = &rule.spec.open_report {
                    reports.push(ReportRequest {
                        category: category.clone(),
                        place_path: device.path.clone(),
                        place_id: device.place_id.clone(),
                        description: format!(
                            "{} ({}): {}",
                            rule.spec.alarm_type, device.kind, details
                        ),
                        alarm_id: id.clone(),
                    });
                }
                events.push(BusEvent {
                    kind: if new { "alarm.raised" } else { "alarm.updated" }.into(),
                    path: device.path.clone(),
                    id,
                    users: vec![],
                });
            }
            Action::Clear { device, alarm_type } => {
                if let Some((id, path)) = store
                    .clear_alarm_by_rule(tx, &device.id, alarm_type, now)
                    .await?
                {
                    events.push(BusEvent {
                        kind: "alarm.cleared".into(),
                        path,
                        id,
                        users: vec![],
                    });
                }
            }
        }
    }
    Ok((events, reports))
}
