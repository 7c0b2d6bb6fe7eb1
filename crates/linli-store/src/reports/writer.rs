//! Group commit for report intake. Submissions are validated and prepared concurrently, then
//! handed to one writer task over a bounded queue; the writer takes whatever is waiting (up to
//! [`MAX_BATCH`]), writes it in one transaction — multi-row inserts of the reports and their
//! events, the audit entries chained in order, the inbox notices — commits once, and only then
//! answers each submitter. A durable "created" therefore still means committed, while one fsync
//! and a few statements are shared by the whole batch. If a batch fails, its submissions are
//! retried one by one, so one bad submission never fails its neighbours.

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use linli_core::{AppError, AppResult};

use crate::Store;
use crate::audit::{self, Actor};
use crate::db::{Val, db_err, insert_many};
use crate::notify::Notice;

/// Most submissions written in one transaction.
pub const MAX_BATCH: usize = 128;
/// Submissions waiting for the writer; senders wait (back-pressure) when it is full.
pub const QUEUE: usize = 1024;

pub(crate) const REPORT_INSERT_COLS: [&str; 20] = [
    "id",
    "kind",
    "category",
    "title",
    "description",
    "place_id",
    "path",
    "community_path",
    "lat_e6",
    "lon_e6",
    "plan_x",
    "plan_y",
    "channel",
    "anonymous",
    "reporter_user_id",
    "household_id",
    "created_by",
    "status",
    "routing_rule_id",
    "public_requested",
];

const EVENT_COLS: [&str; 11] = [
    "id",
    "report_id",
    "action",
    "from_status",
    "to_status",
    "actor_id",
    "actor",
    "at",
    "public_note",
    "internal_note",
    "data",
];

const CONTACT_COLS: [&str; 12] = [
    "report_id",
    "first_name",
    "last_name",
    "email_enc",
    "email_masked",
    "phone_enc",
    "phone_bidx",
    "phone_masked",
    "device_id",
    "account_id",
    "user_id",
    "created_at",
];

fn contact_values(id: &str, at: i64, c: &super::contacts::SealedContact) -> Vec<Val> {
    vec![
        Val::from(id.to_string()),
        c.first_name.clone().into(),
        c.last_name.clone().into(),
        c.email_enc.clone().into(),
        c.email_masked.clone().into(),
        c.phone_enc.clone().into(),
        c.phone_bidx.clone().into(),
        c.phone_masked.clone().into(),
        c.device_id.clone().into(),
        c.account_id.clone().into(),
        c.user_id.clone().into(),
        Val::Int(at),
    ]
}

/// One prepared submission.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub id: String,
    pub path: String,
    pub title: String,
    /// Values in [`REPORT_INSERT_COLS`] order.
    pub values: Vec<Val>,
    pub at: i64,
    pub actor: Actor,
    pub event_data: Value,
    pub audit_after: Value,
    pub notify: Vec<String>,
    /// Contact details given with it (Open311), sealed.
    pub contact: Option<super::contacts::SealedContact>,
}

pub(crate) struct Job {
    row: NewRow,
    done: oneshot::Sender<AppResult<()>>,
}

pub(crate) type WriterHandle = mpsc::Sender<Job>;

impl Store {
    /// Write a prepared report through the group-commit writer; returns after its commit.
    pub(crate) async fn write_new_report(&self, row: NewRow) -> AppResult<()> {
        let tx = self
            .report_writer
            .get_or_init(|| async {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(writer_loop(self.clone(), rx));
                tx
            })
            .await
            .clone();
        let (done, answer) = oneshot::channel();
        tx.send(Job { row, done })
            .await
            .map_err(|_| AppError::internal())?;
        answer.await.map_err(|_| AppError::internal())?
    }

    async fn write_batch(&self, rows: &[&NewRow]) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let mut reports = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let mut v = r.values.clone();
            v.push(Val::Int(r.at));
            v.push(Val::Int(r.at));
            reports.push(v);
            events.push(vec![
                Val::from(linli_core::new_id()),
                Val::from(r.id.clone()),
                Val::from("submit"),
                Val::NullText,
                Val::from("submitted"),
                Val::from(r.actor.id.clone()),
                Val::from(r.actor.name.clone()),
                Val::Int(r.at),
                Val::NullText,
                Val::NullText,
                Val::from(r.event_data.to_string()),
            ]);
            entries.push(audit::OwnedEntry {
                actor: r.actor.clone(),
                action: "report.create".into(),
                entity: "report".into(),
                entity_id: r.id.clone(),
                path: Some(r.path.clone()),
                after: Some(r.audit_after.clone()),
            });
        }
        let mut cols: Vec<&str> = REPORT_INSERT_COLS.to_vec();
        cols.push("created_at");
        cols.push("updated_at");
        insert_many(&mut tx, "reports", &cols, reports).await?;
        insert_many(&mut tx, "report_events", &EVENT_COLS, events).await?;
        let contacts: Vec<Vec<Val>> = rows
            .iter()
            .filter_map(|r| r.contact.as_ref().map(|c| contact_values(&r.id, r.at, c)))
            .collect();
        if !contacts.is_empty() {
            insert_many(&mut tx, "report_contacts", &CONTACT_COLS, contacts).await?;
        }
        audit::append_many(&mut tx, self.now_ms(), entries).await?;
        let links: Vec<String> = rows.iter().map(|r| format!("/reports/{}", r.id)).collect();
        let notices: Vec<(&[String], Notice<'_>)> = rows
            .iter()
            .zip(&links)
            .map(|(r, link)| {
                (
                    r.notify.as_slice(),
                    Notice {
                        kind: "report.submitted",
                        key: "notice-report-submitted",
                        args: serde_json::json!({ "title": r.title }),
                        entity: "report",
                        entity_id: &r.id,
                        path: Some(&r.path),
                        link: Some(link),
                    },
                )
            })
            .collect();
        self.notify_many(&mut tx, &notices).await?;
        tx.commit().await.map_err(db_err)?;
        for r in rows {
            self.publish_report("submitted", &r.id, &r.path);
        }
        Ok(())
    }
}

async fn writer_loop(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let rows: Vec<&NewRow> = batch.iter().map(|j| &j.row).collect();
        let result = store.write_batch(&rows).await;
        match result {
            Ok(()) => {
                for j in batch.drain(..) {
                    let _ = j.done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                for j in batch.drain(..) {
                    let _ = j.done.send(Err(e.clone()));
                }
            }
            Err(_) => {
                for j in batch.drain(..) {
                    let r = store.write_batch(&[&j.row]).await;
                    let _ = j.done.send(r);
                }
            }
        }
    }
}
