//! A QoS 1 test device for the crash and soak benchmarks: it publishes telemetry messages that
//! each carry a unique sequence number and reports which ones the broker acknowledged. Linli's
//! ingest sends PUBACK only after the message is committed, so every acknowledged number must
//! later be found in `telemetry` (`stored_seqs`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::{Error as MqttError, QoS};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use linli_store::Store;

/// The telemetry key that carries the sequence number.
pub(crate) const SEQ_KEY: &str = "bench_seq";

pub(crate) struct Qos1Device {
    stream: TcpStream,
    topic: String,
    read: BytesMut,
    pkid: u16,
}

impl Qos1Device {
    pub(crate) async fn connect(
        addr: SocketAddr,
        device_id: &str,
        token: &str,
    ) -> anyhow::Result<Qos1Device> {
        let stream = crate::bench_iot::raw_connect(addr, device_id, token).await?;
        Ok(Qos1Device {
            stream,
            topic: format!("linli/{device_id}/telemetry"),
            read: BytesMut::with_capacity(4096),
            pkid: 0,
        })
    }

    /// Publish one QoS 1 message per sequence number and wait (at most `limit`) for their
    /// PUBACKs. Returns the numbers acknowledged; an error or a closed connection ends the wait
    /// early (the rest are then not acknowledged, which is allowed — only losing an acknowledged
    /// one is not).
    pub(crate) async fn publish(&mut self, seqs: &[u64], limit: Duration) -> Vec<u64> {
        let mut pending: HashMap<u16, u64> = HashMap::new();
        let mut out = BytesMut::new();
        for &seq in seqs {
            self.pkid = self.pkid % 65_535 + 1;
            let payload = format!(
                r#"{{"values":{{"temperature":{}.5,"{SEQ_KEY}":{seq}}}}}"#,
                18 + seq % 8
            );
            let mut p = Publish::new(self.topic.as_str(), QoS::AtLeastOnce, payload);
            p.pkid = self.pkid;
            if Packet::Publish(p).write(&mut out, usize::MAX).is_err() {
                return Vec::new();
            }
            pending.insert(self.pkid, seq);
        }
        if self.stream.write_all(&out).await.is_err() {
            return Vec::new();
        }
        let mut acked = Vec::with_capacity(seqs.len());
        let _ = tokio::time::timeout(limit, async {
            while !pending.is_empty() {
                match Packet::read(&mut self.read, 1 << 20) {
                    Ok(Packet::PubAck(a)) => {
                        if let Some(seq) = pending.remove(&a.pkid) {
                            acked.push(seq);
                        }
                    }
                    Ok(_) => {}
                    Err(MqttError::InsufficientBytes(_)) => {
                        if self.stream.read_buf(&mut self.read).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
        .await;
        acked
    }
}

/// The sequence numbers stored in `telemetry` for one device.
pub(crate) async fn stored_seqs(store: &Store, device_id: &str) -> anyhow::Result<HashSet<u64>> {
    let rows = sqlx::query("SELECT points FROM telemetry WHERE device_id = $1")
        .bind(device_id.to_string())
        .fetch_all(&store.db.read)
        .await?;
    let mut seqs = HashSet::new();
    for r in rows {
        let points: String = r.get("points");
        let Ok(points) = serde_json::from_str::<Vec<(i64, serde_json::Value)>>(&points) else {
            bail!("telemetry row of {device_id} is not valid JSON");
        };
        for (_, values) in points {
            if let Some(n) = values[SEQ_KEY].as_u64() {
                seqs.insert(n);
            }
        }
    }
    Ok(seqs)
}
