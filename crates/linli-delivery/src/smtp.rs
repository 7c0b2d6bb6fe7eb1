//! The e-mail channel: `email` rows (subject and body rendered when queued) sent with lettre
//! over SMTP — plain, STARTTLS or implicit TLS (rustls with the Mozilla root certificates from
//! webpki-roots).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use linli_store::Store;
use linli_store::notify::outbox::{Claimed, Outcome};

use crate::{Channel, SEND_TIMEOUT, SendFuture};

/// How to reach the SMTP server: `tls` is `none` (plain, for a relay on the host or the local
/// network), `starttls` (upgrade on port 587/25) or `tls` (implicit TLS, port 465); TLS uses
/// rustls with the Mozilla root certificates (webpki-roots).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// none, starttls or tls
    pub tls: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Sender address, e.g. `邻里 <noreply@example.org>`.
    pub from: String,
    /// Name announced in EHLO (default `localhost`).
    pub helo: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .finish()
    }
}

impl SmtpConfig {
    /// Check the settings once at start, with a message an operator can act on.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("smtp.host is empty".into());
        }
        if !matches!(self.tls.as_str(), "" | "none" | "starttls" | "tls") {
            return Err(format!(
                "smtp.tls = {:?}: use \"none\", \"starttls\" or \"tls\"",
                self.tls
            ));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!("smtp.from {:?} is not a valid address", self.from));
        }
        Ok(())
    }
}

/// Sends `email` rows through one SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpChannel {
    cfg: SmtpConfig,
}

impl SmtpChannel {
    pub fn new(cfg: SmtpConfig) -> SmtpChannel {
        SmtpChannel { cfg }
    }
}

impl Channel for SmtpChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, _store: &'a Store, row: &'a Claimed) -> SendFuture<'a> {
        Box::pin(send_email(&self.cfg, row))
    }
}

async fn send_email(cfg: &SmtpConfig, c: &Claimed) -> Outcome {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let payload: Value = serde_json::from_str(&c.payload).unwrap_or(Value::Null);
    let subject = payload["subject"].as_str().unwrap_or_default().to_string();
    let body = payload["body"].as_str().unwrap_or_default().to_string();
    let (Ok(from), Ok(to)) = (
        cfg.from.parse::<lettre::message::Mailbox>(),
        c.target.parse::<lettre::message::Mailbox>(),
    ) else {
        return Outcome::Failed(None, "invalid sender or recipient address".into());
    };
    let msg = match Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
    {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(None, format!("message: {e}")),
    };
    let builder = match cfg.tls.as_str() {
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host),
        _ => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            cfg.host.clone(),
        )),
    };
    let b = match builder {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(None, format!("smtp: {e}")),
    };
    let mut b = b
        .port(cfg.port)
        .timeout(Some(SEND_TIMEOUT))
        .hello_name(ClientId::Domain(
            cfg.helo.clone().unwrap_or_else(|| "localhost".into()),
        ));
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = b.build();
    match tokio::time::timeout(SEND_TIMEOUT * 2, transport.send(msg)).await {
        Err(_) => Outcome::Failed(None, "timeout".into()),
        Ok(Err(e)) => Outcome::Failed(None, format!("smtp: {e}")),
        Ok(Ok(_)) => Outcome::Delivered(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_settings_are_checked() {
        let ok = SmtpConfig {
            host: "smtp.example.org".into(),
            port: 587,
            tls: "starttls".into(),
            from: "邻里 <noreply@example.org>".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        assert!(
            SmtpConfig {
                tls: "ssl3".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            SmtpConfig {
                from: "nobody".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            SmtpConfig {
                host: " ".into(),
                ..ok
            }
            .validate()
            .is_err()
        );
    }

    /// The store checks addresses users type without lettre; the rules must be lettre's, which
    /// sends them (an address the store accepts and lettre refuses would fail every delivery).
    #[test]
    fn the_store_accepts_exactly_the_addresses_lettre_accepts() {
        for a in [
            "wang@linli.test",
            "a.b+c@example.org",
            "user@[127.0.0.1]",
            "user@[::1]",
            "user@127.0.0.1",
            "王@例子.中国",
            "user@例子.中国",
            "\"quoted name\"@example.org",
            "not-an-address",
            "@example.org",
            "user@",
            "user@@example.org",
            "a@b@example.org",
            "user@exa mple.org",
            "user@-example.org",
            "user@example..org",
            "user name@example.org",
            "user@example.org.",
            "x@y",
            "",
            "@",
            ".user@example.org",
            "user.@example.org",
            "用户@example.org",
            "user@xn--fsqu00a.xn--fiqs8s",
            "user@[300.1.1.1]",
            "user@exam_ple.org",
        ] {
            assert_eq!(
                linli_store::notify::follows::valid_email(a),
                a.parse::<lettre::Address>().is_ok(),
                "{a:?}"
            );
        }
    }
}
