//! The batch writer and rule engine: one task owns the rule state, collects messages for up to
//! `batch_ms` (or `batch_max` messages), evaluates the rules, commits telemetry and alarm
//! changes in one transaction, then acknowledges and publishes the alarm events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use linli_core::AppResult;
use linli_core::iot::{Decision, RuleState, Trigger, on_event, on_point, silent};
use linli_store::bus::BusEvent;
use linli_store::db::db_err;
use linli_store::iot::ReportRequest;
use linli_store::iot::alarms::{Chain, Raise, Tier, users_with_role_over};
use linli_store::iot::devices::DeviceAuth;
use linli_store::iot::rules::{Rule, applicable};
use linli_store::iot::telemetry::{DeviceBatch, write_batches};

use crate::{Ack, Cmd, Iot, Job, Payload};

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
    Sos {
        device: Arc<DeviceAuth>,
        person: String,
    },
}

pub struct Writer {
    iot: Iot,
    rules: Vec<Rule>,
    /// device id → indexes of the rules that apply to it.
    applies: HashMap<String, Vec<usize>>,
    state: HashMap<(String, String), RuleState>,
    last_seen: HashMap<String, i64>,
    last_retention: i64,
}

impl Writer {
    /// Rebuild the rule engine's state from storage.
    pub(crate) async fn load(iot: Iot) -> AppResult<Writer> {
        let store = iot.store().clone();
        let rules = store.rules_all().await?;
        let mut state = HashMap::new();
        for (originator, rule_id) in store.active_rule_alarms().await? {
            state.insert(
                (originator, rule_id),
                RuleState {
                    active: true,
                    ..RuleState::default()
                },
            );
        }
        let now = store.now_ms();
        let mut last_seen: HashMap<String, i64> =
            store.devices_last_seen().await?.into_iter().collect();
        // Devices never heard from count from now, so a fresh install does not flag them all.
        for d in store.device_auth_all().await? {
            last_seen.entry(d.id).or_insert(now);
        }
        Ok(Writer {
            iot,
            rules,
            applies: HashMap::new(),
            state,
            last_seen,
            last_retention: 0,
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

    async fn batch(&mut self, jobs: Vec<Job>) {
        let now = self.iot.store().now_ms();
        let mut groups: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        let mut actions = Vec::new();
        let mut acks: Vec<Ack> = Vec::with_capacity(jobs.len());
        let mut points = 0u64;
        for job in jobs {
            let d = job.device.clone();
            self.last_seen.insert(d.id.clone(), now);
            let rules = self.rules_for(&d);
            match &job.payload {
                Payload::Telemetry(t) => {
                    let ts = t.ts.unwrap_or(now);
                    let vals = serde_json::to_string(&t.values).unwrap_or_else(|_| "{}".into());
                    groups.entry(d.id.clone()).or_default().push((ts, vals));
                    for i in &rules {
                        let rule = &self.rules[*i];
                        let st = self
                            .state
                            .entry((d.id.clone(), rule.id.clone()))
                            .or_default();
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
                        actions.push(Action::Sos {
                            device: d.clone(),
                            person: p.clone(),
                        });
                    }
                    for i in &rules {
                        let rule = &self.rules[*i];
                        let st = self
                            .state
                            .entry((d.id.clone(), rule.id.clone()))
                            .or_default();
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
            points += 1;
            if let Some(a) = job.ack {
                acks.push(a);
            }
        }
        let batches: Vec<DeviceBatch> = groups
            .into_iter()
            .map(|(device_id, points)| DeviceBatch { device_id, points })
            .collect();
        let result = self.commit(&batches, &actions, now).await;
        let ok = match result {
            Ok((events, reports)) => {
                let stats = self.iot.stats();
                stats.stored.fetch_add(points, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("linli_iot_points_stored_total").increment(points);
                for e in events {
                    if e.kind == "alarm.raised" {
                        let _ = self.iot.store().publish_alarm_inbox(&e.id, now).await;
                    }
                    self.iot.store().bus.publish(e);
                }
                self.open_reports(reports);
                // SOS needs the person's care chain: its own transaction, before the ack.
                for a in &actions {
                    if let Action::Sos { device, person } = a
                        && let Err(e) = self
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
                tracing::error!(error = %e, "telemetry batch failed; not acknowledged");
                // The rule state may be ahead of storage now: rebuild it.
                if let Ok(w) = Writer::load(self.iot.clone()).await {
                    self.state = w.state;
                }
                false
            }
        };
        for a in acks {
            a(ok);
        }
    }

    async fn commit(
        &self,
        batches: &[DeviceBatch],
        actions: &[Action],
        now: i64,
    ) -> AppResult<(Vec<BusEvent>, Vec<ReportRequest>)> {
        let store = self.iot.store();
        let mut tx = store.db.begin_write().await.map_err(db_err)?;
        write_batches(&mut tx, batches, now).await?;
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
                            users.extend(users_with_role_over(&mut tx, role, &device.path).await?);
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
                            &mut tx,
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
                        .clear_alarm_by_rule(&mut tx, &device.id, alarm_type, now)
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
                Action::Sos { .. } => {}
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok((events, reports))
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

    /// Timers: silent devices (no-data rules), escalations, missed check-ins, retention.
    async fn tick(&mut self) -> AppResult<()> {
        let store = self.iot.store().clone();
        let now = store.now_ms();
        let mut actions = Vec::new();
        let devices: Vec<Arc<DeviceAuth>> = {
            let mut v = Vec::new();
            for id in self.last_seen.keys().cloned().collect::<Vec<_>>() {
                if let Some(d) = self.iot.device(&id).await {
                    v.push(d);
                }
            }
            v
        };
        for d in devices {
            let seen = self.last_seen.get(&d.id).copied().unwrap_or(now);
            for i in self.rules_for(&d) {
                let rule = &self.rules[i];
                if !matches!(rule.spec.trigger, Trigger::NoData { .. }) {
                    continue;
                }
                let st = self
                    .state
                    .entry((d.id.clone(), rule.id.clone()))
                    .or_default();
                if !st.active && silent(&rule.spec, seen, now) {
                    st.active = true;
                    actions.push(Action::Raise {
                        device: d.clone(),
                        rule: Box::new(rule.clone()),
                        details: serde_json::json!({ "last_seen": seen }),
                    });
                }
            }
        }
        if !actions.is_empty() {
            let (events, reports) = self.commit(&[], &actions, now).await?;
            for e in events {
                store.bus.publish(e);
            }
            self.open_reports(reports);
        }
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
}
