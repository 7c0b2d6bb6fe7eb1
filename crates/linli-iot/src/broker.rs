//! The embedded MQTT 3.1.1 broker (packet codec from `rumqttc::mqttbytes::v4`).
//!
//! - CONNECT: username = device id, password = device token; wrong credentials get CONNACK
//!   "bad user name or password" and the connection is closed (counted).
//! - PUBLISH on `linli/{own id}/telemetry|event` is ingested; QoS 1 is acknowledged (PUBACK)
//!   only after the batch holding it committed; QoS 2 gets PUBREC after commit and PUBCOMP on
//!   PUBREL. Other topics under `linli/{own id}/` are only routed to subscribers. Publishing
//!   under another device's id is refused (counted, connection closed).
//! - SUBSCRIBE with `+`/`#` to filters under `linli/{own id}/` (commands); delivery is QoS 0.
//! - Keep-alive (1.5 × the client's interval), maximum packet size (bigger packets close the
//!   connection, counted), bounded per-connection queues: at most `max_inflight` unacknowledged
//!   QoS 1 messages (then the connection stops reading: TCP back-pressure), and a bounded
//!   outgoing queue per subscriber (a slow subscriber misses messages, counted).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as MqttError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use linli_core::iot::{Drop, parse_topic, topic_matches};

use crate::{Iot, Job};

struct Sub {
    conn: u64,
    filter: String,
    out: mpsc::Sender<Packet>,
}

#[derive(Default)]
struct Router {
    subs: RwLock<Vec<Sub>>,
}

impl Router {
    fn route(&self, iot: &Iot, topic: &str, payload: &bytes::Bytes) {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter().filter(|s| topic_matches(&s.filter, topic)) {
            let p = Publish::from_bytes(topic, QoS::AtMostOnce, payload.clone());
            if s.out.try_send(Packet::Publish(p)).is_ok() {
                iot.stats().routed.fetch_add(1, Ordering::Relaxed);
            } else {
                iot.stats().route_shed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn drop_conn(&self, conn: u64) {
        self.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.conn != conn);
    }
}

/// A running broker.
pub struct Broker {
    pub addr: SocketAddr,
}

/// Bind the listen address and serve MQTT until the process ends.
pub async fn start(iot: Iot, listen: &str) -> std::io::Result<Broker> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let router = Arc::new(Router::default());
    let ids = Arc::new(AtomicU64::new(1));
    tokio::spawn(async move {
        loop {
            let (sock, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "mqtt accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let conn = ids.fetch_add(1, Ordering::Relaxed);
            let iot = iot.clone();
            let router = router.clone();
            tokio::spawn(async move {
                metrics::gauge!("linli_mqtt_connections").increment(1.0);
                if let Err(e) = connection(iot, router.clone(), sock, conn).await {
                    tracing::debug!(conn, error = %e, "mqtt connection closed");
                }
                router.drop_conn(conn);
                metrics::gauge!("linli_mqtt_connections").decrement(1.0);
            });
        }
    });
    Ok(Broker { addr })
}

#[derive(Debug)]
enum Closed {
    Io(std::io::Error),
    Protocol(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Io(e) => write!(f, "{e}"),
            Closed::Protocol(s) => write!(f, "{s}"),
        }
    }
}

impl From<std::io::Error> for Closed {
    fn from(e: std::io::Error) -> Self {
        Closed::Io(e)
    }
}

/// Read one packet, reading more bytes as needed. `Ok(None)` at end of stream.
async fn read_packet(
    iot: &Iot,
    sock: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut BytesMut,
    max: usize,
    timeout: Option<Duration>,
) -> Result<Option<Packet>, Closed> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(Some(p)),
            Err(MqttError::InsufficientBytes(_)) => {}
            Err(MqttError::PayloadSizeLimitExceeded(n)) => {
                iot.count_drop(Drop::TooLarge);
                return Err(Closed::Protocol(format!("packet of {n} bytes too large")));
            }
            Err(e) => return Err(Closed::Protocol(e.to_string())),
        }
        buf.reserve(8192);
        let read = sock.read_buf(buf);
        let n = match timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| Closed::Protocol("keep-alive timeout".into()))??,
            None => read.await?,
        };
        if n == 0 {
            return Ok(None);
        }
    }
}

async fn write_packet(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    buf: &mut BytesMut,
    p: &Packet,
) -> std::io::Result<()> {
    buf.clear();
    p.write(buf, usize::MAX)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    w.write_all(buf).await
}

async fn connection(
    iot: Iot,
    router: Arc<Router>,
    sock: TcpStream,
    conn: u64,
) -> Result<(), Closed> {
    let max = iot.config().max_payload + 1024;
    let (mut rd, mut wr) = sock.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(256);
    // CONNECT first, within 10 s.
    let connect =
        match read_packet(&iot, &mut rd, &mut buf, max, Some(Duration::from_secs(10))).await {
            Ok(Some(Packet::Connect(c))) => c,
            Ok(Some(_)) => return Err(Closed::Protocol("expected CONNECT".into())),
            Ok(None) => return Ok(()),
            Err(Closed::Protocol(e)) if e.contains("protocol level") => {
                let nack = Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::RefusedProtocolVersion,
                    false,
                ));
                write_packet(&mut wr, &mut wbuf, &nack).await?;
                return Err(Closed::Protocol(e));
            }
            Err(e) => return Err(e),
        };
    let (user, pass) = connect
        .login
        .as_ref()
        .map(|l| (l.username.clone(), l.password.clone()))
        .unwrap_or_default();
    let device = match iot.authenticate(&user, &pass).await {
        Ok(d) => d,
        Err(d) => {
            iot.count_drop(d);
            let nack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadUserNamePassword, false));
            write_packet(&mut wr, &mut wbuf, &nack).await?;
            return Err(Closed::Protocol(format!("{user}: {}", d.as_str())));
        }
    };
    write_packet(
        &mut wr,
        &mut wbuf,
        &Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
    )
    .await?;
    let keep_alive = match connect.keep_alive {
        0 => None,
        k => Some(Duration::from_millis(u64::from(k) * 1500)),
    };
    let own_prefix = format!("linli/{}/", device.id);

    // Writer task: subscriptions' messages (bounded) and acknowledgements (bounded by the
    // in-flight semaphore).
    let (out_tx, mut out_rx) = mpsc::channel::<Packet>(1024);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Packet>();
    let inflight = Arc::new(Semaphore::new(iot.config().max_inflight.max(1)));
    let writer = tokio::spawn(async move {
        let mut wbuf = BytesMut::with_capacity(4096);
        loop {
            let p = tokio::select! {
                biased;
                p = ack_rx.recv() => p,
                p = out_rx.recv() => p,
            };
            let Some(p) = p else { break };
            // Coalesce what is ready into one write.
            wbuf.clear();
            if p.write(&mut wbuf, usize::MAX).is_err() {
                break;
            }
            while wbuf.len() < 64 * 1024 {
                match ack_rx.try_recv().or_else(|_| out_rx.try_recv()) {
                    Ok(p) => {
                        let _ = p.write(&mut wbuf, usize::MAX);
                    }
                    Err(_) => break,
                }
            }
            if wr.write_all(&wbuf).await.is_err() {
                break;
            }
        }
    });

    let result: Result<(), Closed> = async {
        loop {
            let Some(packet) = read_packet(&iot, &mut rd, &mut buf, max, keep_alive).await? else {
                return Ok(());
            };
            match packet {
                Packet::Publish(p) => {
                    if !p.topic.starts_with(&own_prefix) {
                        iot.count_drop(Drop::WrongTopic);
                        return Err(Closed::Protocol(format!("publish to {}", p.topic)));
                    }
                    router.route(&iot, &p.topic, &p.payload);
                    let Some((_, kind)) = parse_topic(&p.topic) else {
                        // Routed only (e.g. a device's own status topics).
                        if p.qos == QoS::AtLeastOnce {
                            let _ = ack_tx.send(Packet::PubAck(PubAck::new(p.pkid)));
                        }
                        continue;
                    };
                    let payload = match iot.parse(kind, &p.payload) {
                        Ok(x) => x,
                        Err(d) => {
                            iot.count_drop(d);
                            // Acknowledge so the device does not resend a message that will
                            // never be accepted; it is counted and dropped.
                            match p.qos {
                                QoS::AtLeastOnce => {
                                    let _ = ack_tx.send(Packet::PubAck(PubAck::new(p.pkid)));
                                }
                                QoS::ExactlyOnce => {
                                    let _ = ack_tx.send(Packet::PubRec(PubRec::new(p.pkid)));
                                }
                                QoS::AtMostOnce => {}
                            }
                            continue;
                        }
                    };
                    match p.qos {
                        QoS::AtMostOnce => {
                            let _ = iot.try_submit(Job {
                                device: device.clone(),
                                payload,
                                ack: None,
                            });
                        }
                        qos => {
                            let permit = inflight
                                .clone()
                                .acquire_owned()
                                .await
                                .map_err(|_| Closed::Protocol("closed".into()))?;
                            let tx = ack_tx.clone();
                            let pkid = p.pkid;
                            let ack: crate::Ack = Box::new(move |ok| {
                                if ok {
                                    let reply = if qos == QoS::ExactlyOnce {
                                        Packet::PubRec(PubRec::new(pkid))
                                    } else {
                                        Packet::PubAck(PubAck::new(pkid))
                                    };
                                    let _ = tx.send(reply);
                                }
                                drop(permit);
                            });
                            iot.submit(Job {
                                device: device.clone(),
                                payload,
                                ack: Some(ack),
                            })
                            .await
                            .map_err(|_| Closed::Protocol("shutting down".into()))?;
                        }
                    }
                }
                Packet::PubRel(r) => {
                    let _ = ack_tx.send(Packet::PubComp(PubComp::new(r.pkid)));
                }
                Packet::Subscribe(s) => {
                    let mut codes = Vec::new();
                    for f in &s.filters {
                        if f.path.starts_with(&own_prefix) {
                            router
                                .subs
                                .write()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(Sub {
                                    conn,
                                    filter: f.path.clone(),
                                    out: out_tx.clone(),
                                });
                            codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
                        } else {
                            codes.push(SubscribeReasonCode::Failure);
                        }
                    }
                    let _ = ack_tx.send(Packet::SubAck(SubAck::new(s.pkid, codes)));
                }
                Packet::Unsubscribe(u) => {
                    router
                        .subs
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|s| !(s.conn == conn && u.topics.contains(&s.filter)));
                    let _ = ack_tx.send(Packet::UnsubAck(UnsubAck::new(u.pkid)));
                }
                Packet::PingReq => {
                    let _ = ack_tx.send(Packet::PingResp);
                }
                Packet::Disconnect => return Ok(()),
                Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
                other => {
                    return Err(Closed::Protocol(format!("unexpected {other:?}")));
                }
            }
        }
    }
    .await;
    // Let pending acknowledgements of committed messages go out, then close.
    drop(out_tx);
    drop(ack_tx);
    router.drop_conn(conn);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    result
}

#[cfg(test)]
#[path = "broker_fuzz.rs"]
mod fuzz;
