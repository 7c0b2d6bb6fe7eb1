//! Realistic device traffic for demonstrations (`linli simulate`): every demo device publishes
//! its kind's values over MQTT now and then; now and again a smoke detector fires, a manhole
//! cover tilts, a pipe leaks or an elderly resident presses the SOS button — and the values
//! return to normal a little later, so the live view shows alarms come and go.

use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

/// One simulated device: id, kind and token.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub id: String,
    pub kind: String,
    pub token: String,
}

/// Normal values of a kind; `incident` gives the abnormal ones.
pub fn values(kind: &str, incident: bool, rng: &mut impl Rng) -> Value {
    match kind {
        "smoke" => {
            json!({"smoke": u8::from(incident), "battery": rng.random_range(70..100), "temperature": rng.random_range(18.0..26.0_f64).round()})
        }
        "water_leak" => json!({"leak": u8::from(incident), "battery": rng.random_range(60..100)}),
        "door" => json!({"open": u8::from(incident || rng.random_bool(0.1))}),
        "manhole" => {
            json!({"tilt": if incident { rng.random_range(20.0..60.0_f64).round() } else { rng.random_range(0.0..3.0_f64).round() }, "water_level": rng.random_range(0..40)})
        }
        "gate_face" => {
            json!({"temperature": if incident { 38.2 } else { 36.5 }, "passages": rng.random_range(0..12)})
        }
        "thermometer" => json!({"temperature": if incident { 38.0 } else { 36.6 }}),
        _ => json!({"battery": rng.random_range(60..100)}),
    }
}

/// Publish for `seconds` (0 = until stopped): each device every `period`, an incident now and
/// then. Returns the number of messages published.
pub async fn run(
    host: &str,
    port: u16,
    devices: Vec<SimDevice>,
    period: Duration,
    seconds: u64,
) -> u64 {
    let mut tasks = Vec::new();
    let stop = seconds.max(1);
    let forever = seconds == 0;
    for d in devices {
        let host = host.to_string();
        tasks.push(tokio::spawn(async move {
            let mut opts = MqttOptions::new(format!("sim-{}", d.id), host, port);
            opts.set_credentials(d.id.clone(), d.token.clone())
                .set_keep_alive(Duration::from_secs(30));
            let (client, mut ev) = AsyncClient::new(opts, 64);
            tokio::spawn(async move {
                loop {
                    if ev.poll().await.is_err() {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            });
            let start = std::time::Instant::now();
            let mut sent = 0u64;
            let mut incident_left = 0u32;
            // Spread devices over the period.
            let jitter = rand::rng().random_range(0..period.as_millis().max(1) as u64);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            while forever || start.elapsed().as_secs() < stop {
                let (body, topic) = {
                    let mut rng = rand::rng();
                    let p = if d.kind == "sos_button" { 0.0005 } else { 0.01 };
                    if incident_left == 0 && rng.random_bool(p) {
                        incident_left = 3;
                    }
                    let incident = incident_left > 0;
                    incident_left = incident_left.saturating_sub(1);
                    if d.kind == "sos_button" && incident && incident_left == 2 {
                        (json!({"type": "sos"}), format!("linli/{}/event", d.id))
                    } else {
                        (
                            json!({"ts": linli_core::now_ms(), "values": values(&d.kind, incident, &mut rng)}),
                            format!("linli/{}/telemetry", d.id),
                        )
                    }
                };
                if client
                    .publish(topic, QoS::AtLeastOnce, false, body.to_string())
                    .await
                    .is_ok()
                {
                    sent += 1;
                }
                tokio::time::sleep(period).await;
            }
            let _ = client.disconnect().await;
            sent
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total
}
