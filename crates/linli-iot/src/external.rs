//! External-broker mode: subscribe with a shared subscription (`$share/<group>/…`, so several
//! Linli instances split the load) at QoS 1 with manual acknowledgements, and acknowledge each
//! message only after the batch holding it committed. The external broker authenticates the
//! devices; messages for unknown device ids (or devices disabled since) are counted and dropped.
//!
//! Nothing acknowledged is lost, and nothing unacknowledged either: the session is persistent
//! (clean session off) under a client id that stays the same across restarts
//! (`linli-<instance_id>`), so what the broker delivered but Linli had not yet committed when
//! the instance died is delivered again when it comes back; and a batch that failed every
//! attempt makes the client reconnect, which has the broker deliver its messages again.
//!
//! Bounded like a connection of the embedded broker: at most `max_inflight` messages (and
//! `inflight_bytes`) between receipt and the acknowledgement reaching the client's request
//! queue; beyond that, reading from the broker pauses (it keeps the messages).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use linli_core::iot::{Drop, parse_topic};

use crate::{Iot, Job};

/// A broker address: `mqtt://[user:password@]host[:port]` (port 1883 when omitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

/// Parse a broker address (see [`BrokerUrl`]).
pub fn parse_url(url: &str) -> Option<BrokerUrl> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))?;
    let rest = rest.trim_end_matches('/');
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((user_pass, host)) => {
            let (u, p) = user_pass.split_once(':').unwrap_or((user_pass, ""));
            (Some((u.to_string(), p.to_string())), host)
        }
        None => (None, rest),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (rest.to_string(), 1883),
    };
    (!host.is_empty()).then_some(BrokerUrl {
        host,
        port,
        credentials,
    })
}

/// The shared-subscription filters of a group (instances of one installation use the same
/// group, `linli` by default, and split the messages between them).
pub fn topics(group: &str) -> [String; 2] {
    [
        format!("$share/{group}/linli/+/telemetry"),
        format!("$share/{group}/linli/+/event"),
    ]
}

/// The broker client id of an instance: stable across restarts, so its persistent session
/// (and the messages queued in it) is found again.
pub fn client_id(instance: &str) -> String {
    format!("linli-{instance}")
}

/// An instance not heard from for this long has stopped: a live one takes over its session.
pub const SILENT_MS: i64 = 15_000;
/// How often an instance says it is alive and looks for stopped ones.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Run this instance's consumer (`linli-<instance>`), and keep the group whole: say every two
/// seconds that this instance is alive, and take over the broker session of an instance
/// silent for [`SILENT_MS`]. The broker keeps queuing a stopped member's share of the group in
/// its persistent session (Mosquitto does, for shared subscriptions); the instance that
/// takes it over (one, by lease) connects under the stopped one's client id, receives what
/// was queued and what it had not acknowledged, and hands the session back — disconnects
/// without reconnecting — once its owner is alive again (the owner says so before it
/// connects, and its connection takes the session over).
pub async fn start_instance(
    iot: Iot,
    url: &str,
    instance: &str,
    group: &str,
) -> Result<(), String> {
    let store = iot.store().clone();
    store
        .heartbeat(instance)
        .await
        .map_err(|e| format!("registering the instance: {}", e.code))?;
    start(iot.clone(), url, &client_id(instance), group).await?;
    let (url, me, group) = (url.to_string(), instance.to_string(), group.to_string());
    tokio::spawn(async move {
        let mut adopted: std::collections::HashMap<String, watch::Sender<bool>> =
            std::collections::HashMap::new();
        let mut every = tokio::time::interval(HEARTBEAT);
        loop {
            every.tick().await;
            if let Err(e) = store.heartbeat(&me).await {
                tracing::warn!(error = %e, "instance heartbeat");
                continue;
            }
            // Hand back the sessions whose owner is alive again (or that another took).
            let mut give_back = Vec::new();
            for peer in adopted.keys() {
                let alive = store.instance_alive(peer, SILENT_MS).await.unwrap_or(false);
                let ours = store
                    .claim_lease(&format!("mqtt-adopt:{peer}"), 10_000)
                    .await
                    .unwrap_or(false);
                if alive || !ours {
                    give_back.push(peer.clone());
                }
            }
            for peer in give_back {
                if let Some(stop) = adopted.remove(&peer) {
                    tracing::info!(instance = %peer, "handing the broker session back");
                    let _ = stop.send(true);
                    let _ = store.release_lease(&format!("mqtt-adopt:{peer}")).await;
                }
            }
            let silent = match store.silent_instances(&me, SILENT_MS).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for stopped instances");
                    continue;
                }
            };
            for peer in silent {
                if adopted.contains_key(&peer)
                    || !store
                        .claim_lease(&format!("mqtt-adopt:{peer}"), 10_000)
                        .await
                        .unwrap_or(false)
                {
                    continue;
                }
                tracing::warn!(instance = %peer, "instance silent; taking over its broker session");
                let (stop_tx, stop_rx) = watch::channel(false);
                match consume(iot.clone(), &url, &client_id(&peer), &group, stop_rx).await {
                    Ok(_) => {
                        metrics::counter!("linli_iot_sessions_adopted_total").increment(1);
                        adopted.insert(peer, stop_tx);
                    }
                    Err(e) => tracing::warn!(error = %e, "taking over a broker session"),
                }
            }
        }
    });
    Ok(())
}

/// Connect and consume until the process shuts down (reconnecting after errors).
pub async fn start(
    iot: Iot,
    url: &str,
    client_id: &str,
    group: &str,
) -> Result<AsyncClient, String> {
    // Not ready before the subscription is in place.
    iot.health().awaiting_subscription();
    // Its own session is given up only when the process shuts down.
    let stop = iot.shutdown_signal();
    consume(iot, url, client_id, group, stop).await
}

/// Connect as `client_id` and consume until `stop` says so (then disconnect, keeping the
/// session, and do not reconnect).
async fn consume(
    iot: Iot,
    url: &str,
    client_id: &str,
    group: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<AsyncClient, String> {
    let topics = topics(group);
    let broker = parse_url(url).ok_or_else(|| "not an mqtt:// URL".to_string())?;
    let mut opts = MqttOptions::new(client_id, broker.host, broker.port);
    if let Some((user, password)) = broker.credentials {
        opts.set_credentials(user, password);
    }
    opts.set_manual_acks(true)
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(iot.config().max_payload + 1024, 64 * 1024);
    let window = Window::new(iot.config());
    // The client's request queue holds every acknowledgement of the window, so the acker never
    // waits on it while the event loop waits for the window (no deadlock).
    let (client, mut events) = AsyncClient::new(opts, window.count + 64);
    // Acknowledgements are sent by one task, in commit order; each holds its share of the
    // window until handed to the client, so the queue never holds more than the window.
    let (ack_tx, mut ack_rx) = mpsc::channel::<(rumqttc::Publish, Held)>(window.count);
    let acker = client.clone();
    tokio::spawn(async move {
        while let Some((p, held)) = ack_rx.recv().await {
            if acker.ack(&p).await.is_err() {
                break;
            }
            drop(held);
        }
    });
    // A batch refused after every attempt: reconnect, so the broker delivers its unacknowledged
    // messages again (a persistent session keeps them).
    let (redeliver_tx, mut redeliver) = mpsc::channel::<()>(1);
    let sub = client.clone();
    let client_name = client_id.to_string();
    let mut shutdown = iot.shutdown_signal();
    let registry = iot.clone();
    let task = tokio::spawn(async move {
        loop {
            let polled = tokio::select! {
                e = events.poll() => e,
                Some(()) = redeliver.recv() => {
                    tracing::warn!("external mqtt: reconnecting to have refused messages delivered again");
                    let _ = sub.disconnect().await;
                    continue;
                }
                Ok(()) = stop.changed() => {
                    drain(&mut events, &sub, &window).await;
                    return;
                }
                Ok(()) = shutdown.changed() => {
                    drain(&mut events, &sub, &window).await;
                    return;
                }
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    tracing::debug!(client = %client_name, session_present = c.session_present, "external mqtt connected");
                    iot.health().broker_up();
                    for t in &topics {
                        if let Err(e) = sub.subscribe(t.as_str(), QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, "external mqtt subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => iot.health().subscribed(),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    tracing::trace!(client = %client_name, topic = %p.topic, "external mqtt message");
                    let held = window.take(p.payload.len()).await;
                    handle(&iot, &ack_tx, &redeliver_tx, p, held).await;
                }
                Ok(_) => {}
                Err(e) => {
                    if *stop.borrow() {
                        return;
                    }
                    iot.health().broker_down();
                    tracing::warn!(error = %e, client = %client_name, "external mqtt broker; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if *stop.borrow() {
                        return;
                    }
                }
            }
        }
    });
    registry.register_consumer(task);
    Ok(client)
}

/// Stop taking messages, let the acknowledgements of those already taken go out (up to five
/// seconds), then disconnect keeping the session. A restart, or the owner taking its session
/// back, then receives again only what was not stored: nothing is stored twice.
async fn drain(events: &mut rumqttc::EventLoop, sub: &AsyncClient, window: &Window) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while window.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), events.poll()).await {
            // Not taken: the session keeps it for whoever connects next.
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {}
            Ok(Err(_)) => return,
            _ => {}
        }
    }
    let _ = sub.disconnect().await;
    // The acknowledgements queued before the DISCONNECT go out first.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while events.poll().await.is_ok() {}
    })
    .await;
}

type Held = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// The in-flight window: messages and their bytes.
struct Window {
    count: usize,
    bytes: usize,
    messages: Arc<Semaphore>,
    room: Arc<Semaphore>,
}

impl Window {
    fn new(cfg: &crate::IotConfig) -> Window {
        let count = cfg.max_inflight.max(1);
        let bytes = cfg
            .inflight_bytes
            .clamp(cfg.max_payload.max(1), Semaphore::MAX_PERMITS);
        Window {
            count,
            bytes,
            messages: Arc::new(Semaphore::new(count)),
            room: Arc::new(Semaphore::new(bytes)),
        }
    }

    /// Messages taken and not yet acknowledged (or refused).
    fn in_flight(&self) -> usize {
        self.count - self.messages.available_permits()
    }

    async fn take(&self, len: usize) -> Held {
        let size = u32::try_from(len.clamp(1, self.bytes)).unwrap_or(u32::MAX);
        let one = self
            .messages
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let room = self
            .room
            .clone()
            .acquire_many_owned(size)
            .await
            .expect("never closed");
        (one, room)
    }
}

async fn handle(
    iot: &Iot,
    acks: &mpsc::Sender<(rumqttc::Publish, Held)>,
    redeliver: &mpsc::Sender<()>,
    p: rumqttc::Publish,
    held: Held,
) {
    let parsed = parse_topic(&p.topic).ok_or(Drop::WrongTopic);
    let outcome = match parsed {
        Err(d) => Err(d),
        Ok((id, kind)) => match iot.device(id).await {
            None => Err(Drop::UnknownDevice),
            Some(device) => iot.parse(kind, &p.payload).map(|payload| (device, payload)),
        },
    };
    match outcome {
        Err(d) => {
            iot.count_drop(d);
            // Dropped for good: acknowledge so the broker does not redeliver it.
            let _ = acks.try_send((p, held));
        }
        Ok((device, payload)) => {
            let tx = acks.clone();
            let again = redeliver.clone();
            let bytes = p.payload.len();
            let _ = iot
                .submit(Job {
                    device,
                    payload,
                    ack: Some(Box::new(move |ok| {
                        // Never full: each queued acknowledgement holds a share of the window.
                        if ok {
                            let _ = tx.try_send((p, held));
                        } else {
                            let _ = again.try_send(());
                        }
                    })),
                    bytes,
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        use super::{BrokerUrl, parse_url};
        let at = |host: &str, port, credentials: Option<(&str, &str)>| BrokerUrl {
            host: host.into(),
            port,
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
        };
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883"),
            Some(at("127.0.0.1", 1883, None))
        );
        assert_eq!(parse_url("mqtt://broker"), Some(at("broker", 1883, None)));
        assert_eq!(
            parse_url("mqtt://linli:s3cr@t@broker:8883/"),
            Some(at("broker", 8883, Some(("linli", "s3cr@t"))))
        );
        assert_eq!(parse_url("http://x"), None);
        assert_eq!(parse_url("mqtt://:1883"), None);
    }
}
