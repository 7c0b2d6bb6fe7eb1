//! External-broker mode: subscribe with a shared subscription (`$share/linli/…`, so several
//! Linli instances split the load) at QoS 1 with manual acknowledgements, and acknowledge each
//! message only after the batch holding it committed. The external broker authenticates the
//! devices; messages for unknown device ids are counted and dropped.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

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
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(iot.config().max_payload + 1024, 64 * 1024);
    let (client, mut events) = AsyncClient::new(opts, 1024);
    // Acknowledgements are sent by one task, in commit order.
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<rumqttc::Publish>();
    let acker = client.clone();
    tokio::spawn(async move {
        while let Some(p) = ack_rx.recv().await {
            if acker.ack(&p).await.is_err() {
                break;
            }
        }
    });
    let sub = client.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for t in &topics {
                        if let Err(e) = sub.subscribe(t.as_str(), QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, "external mqtt subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    handle(&iot, &ack_tx, p).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "external mqtt broker; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(client)
}

async fn handle(iot: &Iot, acks: &mpsc::UnboundedSender<rumqttc::Publish>, p: rumqttc::Publish) {
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
            let _ = acks.send(p);
        }
        Ok((device, payload)) => {
            let tx = acks.clone();
            let msg = p.clone();
            let _ = iot
                .submit(Job {
                    device,
                    payload,
                    ack: Some(Box::new(move |ok| {
                        if ok {
                            let _ = tx.send(msg);
                        }
                    })),
                    bytes: p.payload.len(),
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
