//! Configuration: built-in defaults < `linli.toml` < `LINLI_*` environment < command-line flags.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub demo: bool,
    pub demo_password: String,
    pub master_key: Option<String>,
    pub sqlite_synchronous: String,
    pub max_connections: u32,
    pub secure_cookies: bool,
    pub log: String,
    /// Site address used in links of e-mails (e.g. `https://linli.example.org`).
    pub public_url: String,
    /// Outgoing e-mail; disabled while `smtp.host` is empty.
    pub smtp: linli_delivery::SmtpConfig,
    /// Embedded MQTT broker address ("" = off). Ignored when `mqtt_url` is set.
    pub mqtt_listen: String,
    /// External MQTT broker (mqtt://host:port) instead of the embedded one.
    pub mqtt_url: Option<String>,
    /// External broker: the shared-subscription group. Instances of one installation use the
    /// same group and split the messages; another installation on the same broker needs its own.
    pub mqtt_group: String,
    /// This instance's stable name among the instances of one installation (the external
    /// broker's client id is `linli-<instance_id>`, with a persistent session, so messages
    /// waiting for it survive a restart). Empty: derived from `listen`.
    pub instance_id: String,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client. A list in
    /// the file; in the environment a list or comma-separated
    /// (`LINLI_TRUSTED_PROXIES=10.0.0.1,10.0.0.2`).
    #[serde(deserialize_with = "list_or_commas")]
    pub trusted_proxies: Vec<String>,
    /// Embedded broker: topic filters per connection (further ones get SUBACK 0x80).
    pub mqtt_max_subscriptions: usize,
    /// Embedded broker: the longest keep-alive granted, seconds (also to clients asking for 0);
    /// a connection silent for 1.5 × it is closed.
    pub mqtt_max_keep_alive: u16,
    /// Embedded broker: seconds a write may wait for a client that does not read before the
    /// connection is closed.
    pub mqtt_write_timeout: u64,
    /// Seconds between re-checks of every device's credentials against the database (live
    /// sessions with a revoked token are closed): the backstop for a revocation notice missed
    /// between instances.
    pub iot_revalidate_secs: u64,
    /// Telemetry batch window (ms) and size.
    pub iot_batch_ms: u64,
    pub iot_batch_max: usize,
    /// Raw telemetry older than this is folded into hourly averages; older than retention, deleted.
    pub iot_downsample_days: i64,
    pub iot_retention_days: i64,
    /// Minutes between SOS escalation tiers and repeats until someone acknowledges.
    pub sos_repeat_minutes: i64,
    /// Local time ("HH:MM", in `time_zone`) by which 独居老人 must have checked in.
    pub checkin_deadline: String,
    /// The time zone (IANA name) for display, the working-day calendar and deadlines, "this
    /// year", the daily check-in and Open311's offsets; instants are stored in UTC.
    pub time_zone: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./linli-data"),
            database_url: None,
            demo: false,
            demo_password: "linli-demo".into(),
            master_key: None,
            sqlite_synchronous: "FULL".into(),
            max_connections: 8,
            secure_cookies: false,
            log: "info".into(),
            public_url: String::new(),
            smtp: linli_delivery::SmtpConfig {
                host: String::new(),
                port: 25,
                tls: "none".into(),
                user: None,
                password: None,
                from: "Linli <noreply@localhost>".into(),
                helo: None,
            },
            mqtt_listen: "127.0.0.1:1884".into(),
            mqtt_url: None,
            mqtt_group: "linli".into(),
            instance_id: String::new(),
            trusted_proxies: Vec::new(),
            mqtt_max_subscriptions: 16,
            mqtt_max_keep_alive: 1200,
            mqtt_write_timeout: 30,
            iot_revalidate_secs: 60,
            iot_batch_ms: 20,
            iot_batch_max: 8192,
            iot_downsample_days: 7,
            iot_retention_days: 365,
            sos_repeat_minutes: 5,
            checkin_deadline: "10:00".into(),
            time_zone: "Asia/Shanghai".into(),
        }
    }
}

/// A list of strings, or one string of comma-separated items (how an environment variable
/// says it).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::One(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    })
}

/// The commented default file printed by `linli config default`.
pub const DEFAULT_TOML: &str = r#"# Linli configuration. Every key can also be set as an environment variable
# LINLI_<KEY> (e.g. LINLI_DATABASE_URL) or, for the common ones, a command-line flag.
# Precedence: defaults < this file < environment < flags.

# Address the HTTP server listens on.
listen = "127.0.0.1:8080"

# Where the embedded database (linli.db), the master key and uploads live.
data_dir = "./linli-data"

# Leave unset for the embedded SQLite database in data_dir. For a city, use PostgreSQL:
# database_url = "postgres://linli:secret@127.0.0.1:5432/linli"

# Seed the demo district on start (idempotent). Same as `serve --demo`.
demo = false

# Password of every demo account (only used with demo = true).
demo_password = "linli-demo"

# 64 hex characters: the master key for encrypting ID and phone numbers. When unset, a key is
# generated on first start into data_dir/master.key (keep a copy: without it the encrypted
# fields cannot be read). Several instances sharing one PostgreSQL must share the key.
# master_key = "..."

# SQLite durability: FULL (a confirmed write survives power loss) or NORMAL (survives a crash
# of Linli, not of the machine; faster).
sqlite_synchronous = "FULL"

# Database connections for reads (SQLite writes always use one connection).
max_connections = 8

# Mark the session cookie Secure; turn on when users reach Linli over HTTPS.
secure_cookies = false

# Log filter (tracing EnvFilter syntax), e.g. "info" or "linli=debug,sqlx=warn".
log = "info"

# Site address for links in notification e-mails.
# public_url = "https://linli.example.org"

# IoT. The embedded MQTT 3.1.1 broker listens here ("" turns it off); when the port is taken,
# the next free one (up to +10) is used and printed. Devices connect with username = device id,
# password = device token, and publish to linli/{device_id}/telemetry or .../event.
mqtt_listen = "127.0.0.1:1884"
# Use an external broker instead (shared subscription $share/<mqtt_group>/linli/+/telemetry,
# QoS 1, a persistent session per instance):
# mqtt_url = "mqtt://127.0.0.1:1883"
# Instances of one installation share the group and split the messages; a second installation on
# the same broker needs a group of its own.
mqtt_group = "linli"
# This instance's stable name among several (a, b, c …): the broker keeps the messages of the
# client linli-<instance_id> while it restarts. Empty: derived from `listen`.
instance_id = ""

# Behind a load balancer: the proxies whose X-Forwarded-For names the client (addresses or CIDR
# blocks). Without it every client has the proxy's address, and login throttling by address
# would lock everyone out together.
trusted_proxies = []
# Limits of the embedded broker per connection: topic filters (more get SUBACK 0x80); the
# longest keep-alive granted in seconds (a client asking for 0 gets it too; silent for 1.5 × it,
# the connection is closed); seconds a write may wait for a client that does not read.
mqtt_max_subscriptions = 16
mqtt_max_keep_alive = 1200
mqtt_write_timeout = 30
# A device token reset ends the device's sessions at once on every instance; as a backstop,
# every device's credentials are re-read this often (seconds).
iot_revalidate_secs = 60
# Telemetry is committed in batches: every iot_batch_ms or iot_batch_max messages.
iot_batch_ms = 20
iot_batch_max = 8192
# Raw telemetry older than this many days becomes hourly averages; older than retention, deleted.
iot_downsample_days = 7
iot_retention_days = 365
# SOS 一键通: minutes between escalation tiers (family → grid worker → committee) and repeats.
sos_repeat_minutes = 5
# 独居老人 who have not checked in by this local time get a missed-check-in alarm.
checkin_deadline = "10:00"

# Time zone (IANA name) in which times are shown and days counted: the working-day calendar and
# deadlines, "this year", the check-in deadline, monthly statistics, Open311 timestamps.
# Instants are stored in UTC. Zones without daylight saving time only (Asia/Shanghai,
# Asia/Urumqi, Asia/Hong_Kong, Asia/Taipei, UTC …; an unknown name stops the start with the
# list). Every instance sharing one database must use the same zone.
time_zone = "Asia/Shanghai"

# Outgoing e-mail for notices (users turn it on under Messages → settings). Disabled while host
# is empty. Also LINLI_SMTP_HOST, LINLI_SMTP_PORT, LINLI_SMTP_TLS, LINLI_SMTP_USER,
# LINLI_SMTP_PASSWORD, LINLI_SMTP_FROM. tls: "none" (plain, a relay nearby), "starttls"
# (usually port 587) or "tls" (implicit TLS, usually port 465).
[smtp]
host = ""
port = 25
tls = "none"
from = "Linli <noreply@localhost>"
# user = "linli"
# password = "..."
"#;

/// Flags that override the configuration.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub demo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_url: Option<String>,
}

pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, figment::Error> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(f) => fig = fig.merge(Toml::file_exact(f)),
        None => fig = fig.merge(Toml::file("linli.toml")),
    }
    fig.merge(Env::prefixed("LINLI_"))
        .merge(Env::prefixed("LINLI_SMTP_").map(|k| format!("smtp.{}", k.as_str()).into()))
        .merge(Serialized::defaults(overrides))
        .extract()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let parsed: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(DEFAULT_TOML))
            .extract()
            .unwrap();
        let d = Config::default();
        assert_eq!(parsed.listen, d.listen);
        assert_eq!(parsed.data_dir, d.data_dir);
        assert_eq!(parsed.sqlite_synchronous, d.sqlite_synchronous);
        assert_eq!(parsed.smtp, d.smtp);
        assert_eq!(parsed.mqtt_max_subscriptions, d.mqtt_max_subscriptions);
        assert_eq!(parsed.mqtt_max_keep_alive, d.mqtt_max_keep_alive);
        assert_eq!(parsed.mqtt_write_timeout, d.mqtt_write_timeout);
        assert_eq!(parsed.iot_revalidate_secs, d.iot_revalidate_secs);
        assert_eq!(parsed.time_zone, d.time_zone);
        assert!(d.time_zone.parse::<linli_core::tz::Zone>().is_ok());
    }
}
