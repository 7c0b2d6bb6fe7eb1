//! The webhook channel: `POST <url>` with the notice as JSON, signed with the webhook's secret
//! (`X-Linli-Signature: sha256=<HMAC-SHA256(secret, timestamp + "." + body)>`), over `http://`
//! or `https://` (rustls, Mozilla roots from webpki-roots).
//!
//! Server-side request forgery defences: the webhook admin chooses the URL, so the delivery must
//! not become a way to reach what only the server can reach. The store refuses literal
//! link-local / metadata / multicast addresses when a webhook is created
//! ([`linli_store::notify::webhooks::validate_url`]); here, at delivery, the client resolves
//! names through [`ReceiverResolver`], which drops those addresses from every DNS answer and
//! connects only to what is left (so a name that resolves there — at creation or only later,
//! DNS rebinding — fails instead of reaching it), and an address written into the URL (not
//! resolved, so not filtered) is checked again before sending.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

use linli_store::Store;
use linli_store::notify::outbox::{Claimed, Outcome};
use linli_store::notify::webhooks::{WebhookTarget, never_a_receiver, never_a_receiver_ip};

use crate::{Channel, SEND_TIMEOUT, SendFuture};

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector<ReceiverResolver>>,
    Full<Bytes>,
>;

/// Sends `webhook` rows.
#[derive(Clone)]
pub struct WebhookChannel {
    client: HttpClient,
}

impl Default for WebhookChannel {
    fn default() -> Self {
        WebhookChannel::new()
    }
}

impl WebhookChannel {
    /// `http://` and `https://` (rustls, Mozilla roots from webpki-roots), through the
    /// filtering resolver. No connection is kept between deliveries: each one resolves (and
    /// filters) the name afresh, and nothing outlives the runtime that made it (tests).
    pub fn new() -> WebhookChannel {
        let mut conn = HttpConnector::new_with_resolver(ReceiverResolver::default());
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        conn.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https);
        WebhookChannel { client }
    }

    async fn deliver(&self, store: &Store, c: &Claimed) -> Outcome {
        let Some(wid) = &c.webhook_id else {
            return Outcome::Cancelled;
        };
        let (url, secret) = match store.webhook_target(wid).await {
            Ok(WebhookTarget::Ready { url, secret }) => (url, secret),
            Ok(WebhookTarget::Gone) => return Outcome::Cancelled,
            Ok(WebhookTarget::Paused) => return Outcome::Later,
            Ok(WebhookTarget::SecretUnreadable) => {
                return Outcome::Failed(None, "secret cannot be decrypted".into());
            }
            Err(e) => return Outcome::Failed(None, format!("database: {e}")),
        };
        // An address written into the URL is not resolved (so not filtered) by the client: check
        // it here too (a webhook stored before the creation check existed).
        if literal_address_refused(&url) {
            return Outcome::Failed(None, "address not allowed for webhooks".into());
        }
        let ts = (store.now_ms() / 1000).to_string();
        let sig = signature(&secret, &ts, c.payload.as_bytes());
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "Linli-Webhook/1")
            .header("x-linli-event", c.kind.as_str())
            .header("x-linli-delivery", c.id.as_str())
            .header("x-linli-timestamp", ts.as_str())
            .header("x-linli-signature", sig.as_str())
            .body(Full::new(Bytes::from(c.payload.clone())));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(None, format!("request: {e}")),
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.client.request(req)).await {
            Err(_) => Outcome::Failed(None, "timeout".into()),
            Ok(Err(e)) => Outcome::Failed(None, format!("{e}")),
            Ok(Ok(resp)) => {
                let status = i64::from(resp.status().as_u16());
                if resp.status().is_success() {
                    Outcome::Delivered(Some(status))
                } else {
                    Outcome::Failed(Some(status), format!("HTTP {status}"))
                }
            }
        }
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, store: &'a Store, row: &'a Claimed) -> SendFuture<'a> {
        Box::pin(self.deliver(store, row))
    }
}

/// Whether the URL's host is an address (or name) no webhook may be delivered to.
fn literal_address_refused(url: &str) -> bool {
    url.parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().map(never_a_receiver))
        .unwrap_or(false)
}

/// `sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body).
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// The system resolver, minus the addresses no webhook receiver lives at
/// ([`never_a_receiver_ip`]: link-local and the cloud metadata service, multicast …). The
/// connection is made to what this returns, so a name that resolves there — at creation or only
/// later (DNS rebinding) — fails the delivery instead of reaching it.
#[derive(Clone)]
pub struct ReceiverResolver(GaiResolver);

impl Default for ReceiverResolver {
    fn default() -> Self {
        ReceiverResolver(GaiResolver::new())
    }
}

impl tower_service::Service<Name> for ReceiverResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let lookup = self.0.call(name);
        Box::pin(async move {
            let all: Vec<SocketAddr> = lookup.await?.collect();
            let allowed = allowed_receivers(&all);
            if allowed.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the host resolves only to addresses no webhook may reach (link-local, metadata, multicast)",
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// The addresses a webhook may be delivered to, of those a name resolved to.
fn allowed_receivers(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    addrs
        .iter()
        .filter(|a| !never_a_receiver_ip(a.ip()))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_resolver_drops_addresses_no_receiver_lives_at() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let resolved = [
            a("169.254.169.254:80"),
            a("10.1.2.3:80"),
            a("[fe80::1]:80"),
            a("[::ffff:169.254.169.254]:80"),
            a("127.0.0.1:8080"),
            a("224.0.0.1:80"),
        ];
        assert_eq!(
            allowed_receivers(&resolved),
            vec![a("10.1.2.3:80"), a("127.0.0.1:8080")]
        );
        assert!(allowed_receivers(&[a("169.254.169.254:80")]).is_empty());
    }

    /// Names go through the real system resolver; one that resolves to allowed addresses
    /// (loopback: receivers on the same machine are supported) passes.
    #[tokio::test]
    async fn the_resolver_passes_allowed_names_through() {
        use tower_service::Service;
        let mut r = ReceiverResolver::default();
        let name: Name = "localhost".parse().unwrap();
        std::future::poll_fn(|cx| r.poll_ready(cx)).await.unwrap();
        let addrs: Vec<_> = r.call(name).await.unwrap().collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()),
            "{addrs:?}"
        );
    }

    #[test]
    fn literal_addresses_are_checked_again_at_delivery() {
        for refused in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://0.0.0.0:8080/",
            "http://224.0.0.1/",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert!(literal_address_refused(refused), "{refused}");
        }
        for allowed in [
            "http://127.0.0.1:9000/in",
            "https://hooks.example.org/linli",
            "http://10.0.0.5:8080/in",
        ] {
            assert!(!literal_address_refused(allowed), "{allowed}");
        }
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Reference value computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", "1700000000", br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
