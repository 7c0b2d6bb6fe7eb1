//! Wiring of the IoT runtime into `serve`, and `linli simulate`.

use std::time::Duration;

use anyhow::Context;
use linli_iot::{Iot, IotConfig};
use linli_store::Store;
use linli_store::iot::sos::SafetyConfig;

use crate::config::Config;

/// The runtime settings from the configuration.
pub fn iot_config(cfg: &Config) -> anyhow::Result<IotConfig> {
    let (h, m) = cfg
        .checkin_deadline
        .split_once(':')
        .and_then(|(h, m)| Some((h.trim().parse::<u32>().ok()?, m.trim().parse::<u32>().ok()?)))
        .filter(|(h, m)| *h < 24 && *m < 60)
        .with_context(|| format!("checkin_deadline {:?} is not HH:MM", cfg.checkin_deadline))?;
    Ok(IotConfig {
        batch_ms: cfg.iot_batch_ms.max(1),
        batch_max: cfg.iot_batch_max.max(1),
        downsample_after_days: cfg.iot_downsample_days.max(1),
        retention_days: cfg.iot_retention_days.max(cfg.iot_downsample_days.max(1)),
        max_subscriptions: cfg.mqtt_max_subscriptions,
        max_keep_alive_secs: cfg.mqtt_max_keep_alive.max(1),
        write_timeout_ms: cfg.mqtt_write_timeout.clamp(1, 3600) * 1000,
        revalidate_secs: cfg.iot_revalidate_secs.max(1),
        safety: SafetyConfig {
            sos_repeat_ms: cfg.sos_repeat_minutes.max(1) * 60_000,
            checkin_deadline_minute: h * 60 + m,
        },
        ..IotConfig::default()
    })
}

/// This instance's stable name: `instance_id`, or its listening address (stable across
/// restarts, different between instances on one machine).
fn instance_name(cfg: &Config) -> String {
    let raw = if cfg.instance_id.trim().is_empty() {
        cfg.listen.as_str()
    } else {
        cfg.instance_id.trim()
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

/// Start the runtime and the broker (embedded, or the external client).
pub async fn start(cfg: &Config, store: &Store) -> anyhow::Result<Iot> {
    let iot = Iot::start(store.clone(), iot_config(cfg)?)
        .await
        .map_err(|e| anyhow::anyhow!("starting the IoT runtime: {e}"))?;
    // Alarm rules with `open_report` file repair reports through the reports engine.
    iot.set_report_opener(std::sync::Arc::new(
        linli_store::reports::from_alarm::AlarmReports::new(store.clone()),
    ));
    if let Some(url) = cfg.mqtt_url.as_deref().filter(|u| !u.is_empty()) {
        linli_iot::external::start_instance(iot.clone(), url, &instance_name(cfg), &cfg.mqtt_group)
            .await
            .map_err(|e| anyhow::anyhow!("external MQTT broker: {e}"))?;
        println!(
            "IoT: consuming from the external MQTT broker {} (shared subscription, group {}, client linli-{})",
            crate::redact(url),
            cfg.mqtt_group,
            instance_name(cfg)
        );
        return Ok(iot);
    }
    if cfg.mqtt_listen.is_empty() {
        println!("IoT: embedded MQTT broker off (HTTP ingest only)");
        return Ok(iot);
    }
    // When the port is taken (say by another broker), use the next free one and say so.
    let (host, port) = cfg
        .mqtt_listen
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("mqtt_listen {:?} is not host:port", cfg.mqtt_listen))?;
    for p in port..port.saturating_add(11) {
        match linli_iot::broker::start(iot.clone(), &format!("{host}:{p}")).await {
            Ok(b) => {
                if p != port {
                    println!(
                        "IoT: warning: {} is in use; the embedded MQTT broker listens on {} instead",
                        cfg.mqtt_listen, b.addr
                    );
                }
                println!("IoT: embedded MQTT broker at mqtt://{}", b.addr);
                return Ok(iot);
            }
            Err(e) => tracing::debug!(port = p, error = %e, "mqtt port busy"),
        }
    }
    println!(
        "IoT: warning: could not listen on {} or the next 10 ports; continuing without the embedded MQTT broker (HTTP ingest works)",
        cfg.mqtt_listen
    );
    Ok(iot)
}

/// `linli simulate`: the demo devices publish to the broker.
pub async fn simulate(
    cfg: &Config,
    mqtt: &str,
    seconds: u64,
    period_ms: u64,
) -> anyhow::Result<()> {
    let store = crate::open_store(cfg).await?;
    let (host, port) = mqtt
        .trim_start_matches("mqtt://")
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--mqtt {mqtt:?} is not host:port"))?;
    let devices: Vec<linli_iot::simulate::SimDevice> = store
        .device_auth_all()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .filter(|d| {
            d.token_hash
                == linli_store::iot::devices::token_hash(
                    &linli_store::iot::demo::demo_device_token(&d.id),
                )
        })
        .map(|d| linli_iot::simulate::SimDevice {
            token: linli_store::iot::demo::demo_device_token(&d.id),
            id: d.id,
            kind: d.kind,
        })
        .collect();
    if devices.is_empty() {
        anyhow::bail!("no demo devices: start `linli serve --demo` once first");
    }
    println!(
        "Simulating {} demo devices → mqtt://{host}:{port} (every {period_ms} ms{})",
        devices.len(),
        if seconds == 0 {
            String::new()
        } else {
            format!(", for {seconds} s")
        }
    );
    let n = linli_iot::simulate::run(
        &host,
        port,
        devices,
        Duration::from_millis(period_ms.max(100)),
        seconds,
    )
    .await;
    println!("Published {n} messages.");
    Ok(())
}
