//! The embedded MQTT 3.1.1 broker (packet codec from `rumqttc::mqttbytes::v4`).
//!
//! - CONNECT: username = device id, password = device token; wrong credentials get CONNACK
//!   "bad user name or password" and the connection is closed (counted).
//! - PUBLISH on `linli/{own id}/telemetry|event` is ingested; QoS 1 is acknowledged (PUBACK)
//!   only after the batch holding it committed; QoS 2 gets PUBREC after commit and PUBCOMP on
//!   PUBREL. Other topics under `linli/{own id}/` are only routed to subscribers. Publishing
//!   under another device's id is refused (counted, connection closed).
//! - SUBSCRIBE with `+`/`#` to filters under `linli/{own id}/` (commands); delivery is QoS 0.
//!   At most `max_subscriptions` filters per connection (further ones: SUBACK 0x80, counted);
//!   subscribing to a filter held already replaces it. Routing looks only at the subscriptions
//!   of the publishing device (a device can only subscribe under its own id), so its cost does
//!   not depend on what other devices subscribed.
//! - Revocation: every session is registered by device with the token it authenticated with
//!   (`crate::sessions`); a token reset (or a disabled/deleted device) closes the sessions at
//!   once, on every instance (bus event `device.revoked`, see [`crate::Iot::revoke_device`]).
//! - Every per-connection resource is bounded: keep-alive (1.5 × the client's interval, at
//!   most `max_keep_alive_secs`, also when the client asks for 0), maximum packet size (bigger
//!   packets close the connection, counted), at most `max_inflight` unacknowledged QoS 1
//!   messages and `inflight_bytes` of them (then the connection stops reading: TCP
//!   back-pressure), acknowledgements queued up to that same window, other replies (PINGRESP,
//!   SUBACK …) up to [`CONTROL_QUEUE`] (then reading pauses), routed messages up to
//!   [`OUT_QUEUE`] and `out_queue_bytes` per subscriber (beyond: shed, counted). A write that
//!   waits `write_timeout_ms` (the client does not read) closes the connection, and with it
//!   every queue: nothing of a connection outlives it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use linli_core::iot::{Drop, parse_topic, topic_matches};

use crate::{Iot, Job};

/// Replies other than acknowledgements of ingested messages (PINGRESP, SUBACK, UNSUBACK,
/// PUBCOMP, PUBACK of dropped or routed-only messages) waiting to be written; when full, the
/// connection stops reading until the client reads.
pub const CONTROL_QUEUE: usize = 64;
/// Routed messages waiting to be written to one subscriber (also bounded by `out_queue_bytes`).
pub const OUT_QUEUE: usize = 1024;

struct Sub {
    conn: u64,
    filter: String,
    out: mpsc::Sender<Packet>,
    /// Payload bytes in `out`, bounded by `out_queue_bytes`.
    queued: Arc<AtomicUsize>,
}

/// Subscriptions by device: a device subscribes and publishes only under its own id.
#[derive(Default)]
struct Router {
    by_device: RwLock<std::collections::HashMap<String, Vec<Sub>>>,
}

impl Router {
    fn route(&self, iot: &Iot, device: &str, topic: &str, payload: &bytes::Bytes) {
        let map = self.by_device.read().unwrap_or_else(|e| e.into_inner());
        let Some(subs) = map.get(device) else {
            return;
        };
        let most = iot.config().out_queue_bytes;
        for s in subs.iter().filter(|s| topic_matches(&s.filter, topic)) {
            let len = payload.len();
            let queued = s.queued.fetch_add(len, Ordering::Relaxed);
            let p = Publish::from_bytes(topic, QoS::AtMostOnce, payload.clone());
            if queued + len <= most.max(len) && s.out.try_send(Packet::Publish(p)).is_ok() {
                iot.stats().routed.fetch_add(1, Ordering::Relaxed);
            } else {
                s.queued.fetch_sub(len, Ordering::Relaxed);
                iot.stats().route_shed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn add(&self, device: &str, sub: Sub) {
        self.by_device
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(device.to_string())
            .or_default()
            .push(sub);
    }
    fn remove(&self, device: &str, keep: impl Fn(&Sub) -> bool) {
        let mut map = self.by_device.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get_mut(device) {
            v.retain(keep);
            if v.is_empty() {
                map.remove(device);
            }
        }
    }
    fn drop_conn(&self, device: &str, conn: u64) {
        self.remove(device, |s| s.conn != conn);
    }
}

/// Removes a connection's subscriptions and session when it ends, however it ends.
struct Cleanup {
    iot: Iot,
    router: Arc<Router>,
    device: String,
    conn: u64,
}

impl std::ops::Drop for Cleanup {
    fn drop(&mut self) {
        self.router.drop_conn(&self.device, self.conn);
        self.iot.sessions().unregister(&self.device, self.conn);
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
                if let Err(e) = connection(iot, router, sock, conn).await {
                    tracing::debug!(conn, error = %e, "mqtt connection closed");
                }
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

/// Write one packet before the writer task runs (CONNACK), waiting at most `timeout`.
async fn write_now(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    p: &Packet,
    timeout: Duration,
) -> Result<(), Closed> {
    let mut b = BytesMut::with_capacity(8);
    tokio::time::timeout(timeout, write_packet(w, &mut b, p))
        .await
        .map_err(|_| Closed::Protocol("write timed out".into()))?
        .map_err(Closed::Io)
}

/// An acknowledgement of an ingested message, with its share of the connection's in-flight
/// window: the window is returned once the acknowledgement is written, so unwritten
/// acknowledgements count against it and cannot pile up.
type Reply = (Packet, Inflight);
type Inflight = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// The queues of what a connection sends.
struct Outgoing {
    /// Acknowledgements of ingested messages (bounded by the in-flight window).
    acks: mpsc::Receiver<Reply>,
    /// Other replies ([`CONTROL_QUEUE`]).
    ctl: mpsc::Receiver<Packet>,
    /// Routed messages ([`OUT_QUEUE`], and `out_queued` bytes).
    out: mpsc::Receiver<Packet>,
    out_queued: Arc<AtomicUsize>,
}

/// Writes what the connection sends: acknowledgements first, then other replies, then routed
/// messages, coalesced into writes of up to 64 KiB; each write may wait `timeout`, then the
/// connection is given up. Dropping `_alive` (on return) tells the reader.
async fn writer(
    iot: Iot,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    q: Outgoing,
    timeout: Duration,
    _alive: oneshot::Sender<()>,
) {
    let Outgoing {
        mut acks,
        mut ctl,
        mut out,
        out_queued,
    } = q;
    let mut wbuf = BytesMut::with_capacity(4096);
    let mut written: Vec<Inflight> = Vec::new();
    let mut routed = 0usize;
    fn routed_len(p: &Packet) -> usize {
        match p {
            Packet::Publish(p) => p.payload.len(),
            _ => 0,
        }
    }
    loop {
        let p = tokio::select! {
            biased;
            Some((p, w)) = acks.recv() => {
                written.push(w);
                p
            }
            Some(p) = ctl.recv() => p,
            Some(p) = out.recv() => {
                routed += routed_len(&p);
                p
            }
            else => return,
        };
        // Coalesce what is ready into one write.
        wbuf.clear();
        if p.write(&mut wbuf, usize::MAX).is_err() {
            return;
        }
        while wbuf.len() < 64 * 1024 {
            let p = if let Ok((p, w)) = acks.try_recv() {
                written.push(w);
                p
            } else if let Ok(p) = ctl.try_recv() {
                p
            } else if let Ok(p) = out.try_recv() {
                routed += routed_len(&p);
                p
            } else {
                break;
            };
            let _ = p.write(&mut wbuf, usize::MAX);
        }
        match tokio::time::timeout(timeout, wr.write_all(&wbuf)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                iot.stats().slow_clients.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("linli_mqtt_slow_clients_total").increment(1);
                return;
            }
        }
        out_queued.fetch_sub(routed, Ordering::Relaxed);
        routed = 0;
        written.clear();
    }
}

async fn connection(
    iot: Iot,
    router: Arc<Router>,
    sock: TcpStream,
    conn: u64,
) -> Result<(), Closed> {
    let cfg = iot.config().clone();
    let max = cfg.max_payload + 1024;
    let write_timeout = Duration::from_millis(cfg.write_timeout_ms.max(1));
    let (mut rd, mut wr) = sock.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
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
                write_now(&mut wr, &nack, write_timeout).await?;
                return Err(Closed::Protocol(e));
            }
            Err(e) => return Err(e),
        };
    let (user, pass) = connect
        .login
        .as_ref()
        .map(|l| (l.username.clone(), l.password.clone()))
        .unwrap_or_default();
    let epoch = iot.revocation_epoch();
    let nack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadUserNamePassword, false));
    let device = match iot.authenticate(&user, &pass).await {
        Ok(d) => d,
        Err(d) => {
            iot.count_drop(d);
            write_now(&mut wr, &nack, write_timeout).await?;
            return Err(Closed::Protocol(format!("{user}: {}", d.as_str())));
        }
    };
    // Register the session before answering, so that any revocation from now on finds it; then
    // make sure none was handled while the credentials were being checked.
    let mut revoked = iot
        .sessions()
        .register(&device.id, conn, &device.token_hash);
    let _cleanup = Cleanup {
        iot: iot.clone(),
        router: router.clone(),
        device: device.id.clone(),
        conn,
    };
    if !iot.still_valid(&device, epoch).await {
        iot.count_drop(Drop::BadToken);
        write_now(&mut wr, &nack, write_timeout).await?;
        return Err(Closed::Protocol(format!(
            "{user}: revoked while connecting"
        )));
    }
    let ok = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
    write_now(&mut wr, &ok, write_timeout).await?;
    // Keep-alive 0 means "none" to MQTT; here it means the longest one granted.
    let most = cfg.max_keep_alive_secs.max(1);
    let keep_alive = match connect.keep_alive {
        0 => most,
        k => k.min(most),
    };
    let keep_alive = Some(Duration::from_millis(u64::from(keep_alive) * 1500));
    let own_prefix = format!("linli/{}/", device.id);

    // Writer task, and the bounded queues it drains.
    let window = cfg.max_inflight.max(1);
    let (ack_tx, ack_rx) = mpsc::channel::<Reply>(window);
    let (ctl_tx, ctl_rx) = mpsc::channel::<Packet>(CONTROL_QUEUE);
    let (out_tx, out_rx) = mpsc::channel::<Packet>(OUT_QUEUE);
    let out_queued = Arc::new(AtomicUsize::new(0));
    let inflight = Arc::new(Semaphore::new(window));
    let inflight_bytes = cfg
        .inflight_bytes
        .clamp(cfg.max_payload.max(1), Semaphore::MAX_PERMITS);
    let inflight_bytes_sem = Arc::new(Semaphore::new(inflight_bytes));
    let (alive, mut writer_gone) = oneshot::channel::<()>();
    let mut writer = tokio::spawn(writer(
        iot.clone(),
        wr,
        Outgoing {
            acks: ack_rx,
            ctl: ctl_rx,
            out: out_rx,
            out_queued: out_queued.clone(),
        },
        write_timeout,
        alive,
    ));

    let reader = async {
        let mut filters: HashSet<String> = HashSet::new();
        // Other replies wait for room in their queue: a client that does not read stops
        // being read.
        let send = async |p: Packet| {
            ctl_tx
                .send(p)
                .await
                .map_err(|_| Closed::Protocol("writer gone".into()))
        };
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
                    router.route(&iot, &device.id, &p.topic, &p.payload);
                    let Some((_, kind)) = parse_topic(&p.topic) else {
                        // Routed only (e.g. a device's own status topics).
                        if p.qos == QoS::AtLeastOnce {
                            send(Packet::PubAck(PubAck::new(p.pkid))).await?;
                        }
                        continue;
                    };
                    let bytes = p.payload.len();
                    let payload = match iot.parse(kind, &p.payload) {
                        Ok(x) => x,
                        Err(d) => {
                            iot.count_drop(d);
                            // Acknowledge so the device does not resend a message that will
                            // never be accepted; it is counted and dropped.
                            match p.qos {
                                QoS::AtLeastOnce => {
                                    send(Packet::PubAck(PubAck::new(p.pkid))).await?;
                                }
                                QoS::ExactlyOnce => {
                                    send(Packet::PubRec(PubRec::new(p.pkid))).await?;
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
                                bytes,
                            });
                        }
                        qos => {
                            let closed = |_| Closed::Protocol("closed".into());
                            let one = inflight.clone().acquire_owned().await.map_err(closed)?;
                            let size =
                                u32::try_from(bytes.clamp(1, inflight_bytes)).unwrap_or(u32::MAX);
                            let room = inflight_bytes_sem
                                .clone()
                                .acquire_many_owned(size)
                                .await
                                .map_err(closed)?;
                            let tx = ack_tx.clone();
                            let pkid = p.pkid;
                            let ack: crate::Ack = Box::new(move |ok| {
                                if ok {
                                    let reply = if qos == QoS::ExactlyOnce {
                                        Packet::PubRec(PubRec::new(pkid))
                                    } else {
                                        Packet::PubAck(PubAck::new(pkid))
                                    };
                                    // Never full: each queued acknowledgement holds one of the
                                    // `window` permits. Closed when the connection is gone.
                                    let _ = tx.try_send((reply, (one, room)));
                                }
                            });
                            iot.submit(Job {
                                device: device.clone(),
                                payload,
                                ack: Some(ack),
                                bytes,
                            })
                            .await
                            .map_err(|_| Closed::Protocol("shutting down".into()))?;
                        }
                    }
                }
                Packet::PubRel(r) => {
                    send(Packet::PubComp(PubComp::new(r.pkid))).await?;
                }
                Packet::Subscribe(s) => {
                    let mut codes = Vec::with_capacity(s.filters.len());
                    for f in &s.filters {
                        let code = if !f.path.starts_with(&own_prefix) {
                            SubscribeReasonCode::Failure
                        } else if filters.contains(&f.path) {
                            // The same filter again replaces the subscription (MQTT 3.8.4).
                            SubscribeReasonCode::Success(QoS::AtMostOnce)
                        } else if filters.len() >= cfg.max_subscriptions {
                            iot.stats()
                                .subscribe_refused
                                .fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("linli_mqtt_subscribe_refused_total").increment(1);
                            SubscribeReasonCode::Failure
                        } else {
                            filters.insert(f.path.clone());
                            router.add(
                                &device.id,
                                Sub {
                                    conn,
                                    filter: f.path.clone(),
                                    out: out_tx.clone(),
                                    queued: out_queued.clone(),
                                },
                            );
                            SubscribeReasonCode::Success(QoS::AtMostOnce)
                        };
                        codes.push(code);
                    }
                    send(Packet::SubAck(SubAck::new(s.pkid, codes))).await?;
                }
                Packet::Unsubscribe(u) => {
                    for t in &u.topics {
                        filters.remove(t);
                    }
                    router.remove(&device.id, |s| {
                        !(s.conn == conn && u.topics.contains(&s.filter))
                    });
                    send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await?;
                }
                Packet::PingReq => {
                    send(Packet::PingResp).await?;
                }
                Packet::Disconnect => return Ok(()),
                Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
                other => {
                    return Err(Closed::Protocol(format!("unexpected {other:?}")));
                }
            }
        }
    };
    let mut was_revoked = false;
    let result: Result<(), Closed> = tokio::select! {
        r = reader => r,
        _ = &mut revoked => {
            was_revoked = true;
            Err(Closed::Protocol("credentials revoked".into()))
        }
        _ = &mut writer_gone => Err(Closed::Protocol("client not reading".into())),
    };
    drop(out_tx);
    drop(ctl_tx);
    drop(ack_tx);
    router.drop_conn(&device.id, conn);
    if was_revoked {
        // Nothing more for a revoked session, not even acknowledgements.
        writer.abort();
        return result;
    }
    // Let pending acknowledgements of committed messages go out (bounded), then close.
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(5), &mut writer) => {}
        _ = &mut revoked => writer.abort(),
    }
    result
}

#[cfg(test)]
#[path = "broker_fuzz.rs"]
mod fuzz;
