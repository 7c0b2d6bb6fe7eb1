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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use linli_core::iot::{Drop, parse_topic};

use crate::{Iot, Job};

/// Parse `mqtt://host:port` (port 1883 when omitted).
pub fn parse_url(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((rest.to_string(), 1883)),
    }
}

/// The shared-subscription filters of a group (instances of one installation use the same
/// group, `linli` by default, and split the messages between them).
pub fn topics(group: &str) -> [String; 2] {
    [
        format!("$share/{group}/linli/+/telemetry"),
        format!("$share/{group}/linli/+/event"),
    ]
}

/// Connect and consume until the process ends (reconnecting after errors).
pub async fn start(
    iot: Iot,
    url: &str,
    client_id: &str,
    group: &str,
) -> Result<AsyncClient, String> {
    let topics = topics(group);
    let (host, port) = parse_url(url).ok_or_else(|| format!("not an mqtt:// URL: {url}"))?;
    let mut opts = MqttOptions::new(client_id, host, port);
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
    tokio::spawn(async move {
        loop {
            let polled = tokio::select! {
                e = events.poll() => e,
                Some(()) = redeliver.recv() => {
                    tracing::warn!("external mqtt: reconnecting to have refused messages delivered again");
                    let _ = sub.disconnect().await;
                    continue;
                }
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    iot.health().broker_up();
                    for t in &topics {
                        if let Err(e) = sub.subscribe(t.as_str(), QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, "external mqtt subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let held = window.take(p.payload.len()).await;
                    handle(&iot, &ack_tx, &redeliver_tx, p, held).await;
                }
                Ok(_) => {}
                Err(e) => {
                    iot.health().broker_down();
                    tracing::warn!(error = %e, "external mqtt broker; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(client)
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
        assert_eq!(
            super::parse_url("mqtt://127.0.0.1:1883"),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            super::parse_url("mqtt://broker"),
            Some(("broker".into(), 1883))
        );
        assert_eq!(super::parse_url("http://x"), None);
    }
}
