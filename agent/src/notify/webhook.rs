//! A webhook target: the URL read from an SSM SecureString parameter when first needed, and
//! the message written as Discord, Slack or plain JSON wants it.
//!
//! The URL is a secret. It is never logged, never part of an error, never in `--dry-run`
//! output: every text that leaves this module is scrubbed of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::timeout;
use tracing::error;

use super::http::{HttpPost, Reply};
use super::{Message, SendError, Sink};
use crate::aws::{Secret, Secrets};
use crate::config::{WebhookConfig, WebhookKind};
use crate::decide::EventKind;

/// Reading the parameter is bounded by this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Webhook {
    index: usize,
    config: WebhookConfig,
    secrets: Arc<dyn Secrets>,
    http: Arc<dyn HttpPost>,
    url: Mutex<Option<Secret>>,
    /// The ERROR about an unreadable parameter is written once.
    reported: AtomicBool,
}

impl Webhook {
    pub fn new(
        index: usize,
        config: WebhookConfig,
        secrets: Arc<dyn Secrets>,
        http: Arc<dyn HttpPost>,
    ) -> Self {
        Self {
            index,
            config,
            secrets,
            http,
            url: Mutex::new(None),
            reported: AtomicBool::new(false),
        }
    }

    /// The URL, read once it is first needed; a failure is reported once, and the next
    /// message tries again (the parameter may be created later).
    async fn url(&self) -> Result<Secret, SendError> {
        let mut cached = self.url.lock().await;
        if let Some(u) = cached.as_ref() {
            return Ok(u.clone());
        }
        let name = &self.config.url_parameter;
        let read = match timeout(READ_TIMEOUT, self.secrets.secret(name)).await {
            Ok(Ok(v)) => check_url(&v).map(|()| v),
            Ok(Err(e)) => Err(format!("cannot read the SSM parameter {name:?}: {e}")),
            Err(_) => Err(format!(
                "cannot read the SSM parameter {name:?}: no answer within {READ_TIMEOUT:?}"
            )),
        };
        match read {
            Ok(url) => {
                *cached = Some(url.clone());
                Ok(url)
            }
            Err(reason) => {
                if !self.reported.swap(true, Ordering::Relaxed) {
                    error!(
                        event = "webhook_unavailable",
                        to = %self.label(),
                        parameter = %name,
                        error = %reason,
                        "Notifications to this webhook cannot be sent; the agent keeps working without them."
                    );
                }
                Err(SendError::Drop { reason })
            }
        }
    }
}

/// The parameter must hold an `https://` URL; the reason never repeats the value.
fn check_url(url: &Secret) -> Result<(), String> {
    let u = url.expose().trim();
    let parsed: Result<hyper::Uri, _> = u.parse();
    match parsed {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => Ok(()),
        Ok(_) => Err(
            "the SSM parameter does not hold an https:// URL (value not shown: it is a secret)"
                .into(),
        ),
        Err(_) => Err(
            "the SSM parameter does not hold a valid URL (value not shown: it is a secret)".into(),
        ),
    }
}

/// Removes the URL, and its path (where webhook tokens live), from a text.
pub fn scrub(text: &str, url: &Secret) -> String {
    let full = url.expose().trim();
    let mut out = text.replace(full, "[webhook URL]");
    if let Ok(uri) = full.parse::<hyper::Uri>()
        && let Some(pq) = uri.path_and_query()
        && pq.as_str().len() > 1
    {
        out = out.replace(pq.as_str(), "[webhook path]");
    }
    out
}

/// Discord's `retry_after` (seconds, in the JSON body) or the `Retry-After` header (seconds).
pub fn retry_after(reply: &Reply) -> Option<Duration> {
    let from_body = serde_json::from_str::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("retry_after")?.as_f64());
    let from_header = reply
        .retry_after
        .as_deref()
        .and_then(|h| h.trim().parse::<f64>().ok());
    from_body
        .or(from_header)
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
}

#[async_trait]
impl Sink for Webhook {
    fn label(&self) -> String {
        format!("{}[{}]", self.config.kind.as_str(), self.index)
    }

    fn wants(&self, kind: EventKind) -> bool {
        self.config.events.contains(&kind)
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let url = self.url().await?;
        let body = match self.config.kind {
            WebhookKind::Discord => message.discord(),
            WebhookKind::Slack => message.slack(),
            WebhookKind::Json => message.json(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| SendError::Drop {
            reason: format!("cannot write the body: {e}"),
        })?;
        let reply = self
            .http
            .post_json(&url, bytes)
            .await
            .map_err(|e| SendError::Retry {
                reason: scrub(&e, &url),
                after: None,
            })?;
        let detail = || {
            let body = super::message::clip(reply.body.trim(), 200);
            scrub(&format!("HTTP {}: {body}", reply.status), &url)
        };
        match reply.status {
            200..=299 => Ok(()),
            429 => Err(SendError::Retry {
                reason: detail(),
                after: Some(retry_after(&reply).unwrap_or(Duration::from_secs(1))),
            }),
            408 | 500..=599 => Err(SendError::Retry {
                reason: detail(),
                after: None,
            }),
            _ => Err(SendError::Drop { reason: detail() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_url_and_its_path() {
        let url = Secret::new("https://hooks.example.com/services/T0/B0/sEcReT?x=1");
        let text = "error for https://hooks.example.com/services/T0/B0/sEcReT?x=1 and /services/T0/B0/sEcReT?x=1";
        let out = scrub(text, &url);
        assert!(!out.contains("sEcReT"), "{out}");
        assert!(
            out.contains("[webhook URL]") && out.contains("[webhook path]"),
            "{out}"
        );
    }

    #[test]
    fn retry_after_from_discords_body_or_the_header() {
        let reply = |body: &str, header: Option<&str>| Reply {
            status: 429,
            retry_after: header.map(str::to_string),
            body: body.into(),
        };
        assert_eq!(
            retry_after(&reply(
                r#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#,
                None
            )),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&reply("rate_limited", Some("3"))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&reply("", Some("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(retry_after(&reply(r#"{"retry_after":-1}"#, None)), None);
    }

    #[test]
    fn only_https_urls_are_used_and_the_value_is_never_repeated() {
        assert!(check_url(&Secret::new("https://discord.com/api/webhooks/1/abc")).is_ok());
        for bad in [
            "http://example.com/hook/sEcReT",
            "not a url sEcReT",
            "ftp://x/sEcReT",
            "/relative/sEcReT",
        ] {
            let e = check_url(&Secret::new(bad)).unwrap_err();
            assert!(!e.contains("sEcReT"), "{e}");
        }
        assert_eq!(
            format!("{:?}", Secret::new("https://x/sEcReT")),
            "Secret([redacted])"
        );
    }
}
