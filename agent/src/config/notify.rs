//! `[notify]`: webhook targets (Discord, Slack, JSON) and the players rate limit.

use std::time::Duration;

use serde::Deserialize;

use super::check::{Ctx, DAY, events};
use super::error::ConfigError;
use crate::decide::EventKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    #[serde(default = "d_players_every")]
    players_every: String,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    kind: String,
    url_parameter: String,
    #[serde(default = "d_webhook_events")]
    events: Vec<String>,
}

/// A webhook's events that the stack's wake function posts, not the agent: `waking`, when a
/// lookup wakes the server (docs/cloud.md, "Players are told it is coming").
pub const WAKE_FUNCTION_EVENTS: [&str; 1] = ["waking"];

fn d_webhook_events() -> Vec<String> {
    // The operator's events, and `online` for the players.
    let mut events = vec!["online".to_string()];
    events.extend(super::alerts::d_sns_events());
    events
}
fn d_players_every() -> String {
    "5m".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// At most one `players` notification per this long (the latest count wins).
    pub players_every: Duration,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            players_every: Duration::from_secs(300),
            webhooks: Vec::new(),
        }
    }
}

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// Discord's execute-webhook body: one embed.
    Discord,
    /// Slack's incoming-webhook body: text plus blocks.
    Slack,
    /// A plain JSON object (ntfy, Home Assistant, anything else).
    Json,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discord => "discord",
            Self::Slack => "slack",
            Self::Json => "json",
        }
    }
}

/// One webhook target. The URL itself is a secret: only the name of the SSM SecureString
/// parameter that holds it is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub kind: WebhookKind,
    pub url_parameter: String,
    pub events: Vec<EventKind>,
}

impl RawNotify {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<NotifyConfig, ConfigError> {
        let players_every = cx.duration(
            "notify.players_every",
            &self.players_every,
            Duration::from_secs(10),
            DAY,
        )?;
        if self.webhook.len() > 8 {
            return Err(cx.err(
                "notify.webhook",
                format!("{} targets (expected at most 8)", self.webhook.len()),
            ));
        }
        let webhooks = self
            .webhook
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.validate(cx, i))
            .collect::<Result<_, _>>()?;
        Ok(NotifyConfig {
            players_every,
            webhooks,
        })
    }
}

impl RawWebhook {
    pub(super) fn validate(self, cx: &Ctx<'_>, i: usize) -> Result<WebhookConfig, ConfigError> {
        let key = |k: &str| format!("notify.webhook[{i}].{k}");
        let kind = match self.kind.as_str() {
            "discord" => WebhookKind::Discord,
            "slack" => WebhookKind::Slack,
            "json" => WebhookKind::Json,
            other => {
                return Err(cx.err(
                    key("kind"),
                    format!("{other:?} is not a webhook kind (expected discord, slack or json)"),
                ));
            }
        };
        let url_parameter =
            ssm_parameter_name(&self.url_parameter).map_err(|m| cx.err(key("url_parameter"), m))?;
        let events = events(cx, &key("events"), &self.events, &WAKE_FUNCTION_EVENTS)?;
        Ok(WebhookConfig {
            kind,
            url_parameter,
            events,
        })
    }
}

/// An SSM parameter name: `/path/name` or `name`, of letters, digits and `_.-/`. A value that
/// looks like the URL itself is refused without repeating it: the URL is a secret.
fn ssm_parameter_name(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") || lower.contains("://") {
        return Err(
            "holds a URL (not repeated here: it is a secret); expected the name of an SSM SecureString parameter that holds the URL, like \"/container-manager/discord-webhook\""
                .to_string(),
        );
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
    let valid_shape = !name.is_empty()
        && name.len() <= 2011
        && (!name.contains('/') || name.starts_with('/'))
        && !name.ends_with('/')
        && !name.contains("//");
    if !valid_chars || !valid_shape {
        return Err(format!(
            "{name:?} is not an SSM parameter name (expected /path/name or name, of letters, digits and _.-/)"
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{MINIMAL, assert_rejected, err, with};
    use super::*;

    /// Each bad input is rejected with its key path in the message.
    #[test]
    fn bad_inputs_name_their_key() {
        assert_rejected(&[
            (
                with("", "", "[notify]\nplayers_every = \"1s\""),
                "notify.players_every",
                "out of range",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"teams\"\nurl_parameter = \"/cm/hook\"",
                ),
                "notify.webhook[0].kind",
                "expected discord, slack or json",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"slack\"\nurl_parameter = \"/cm/hook\"\n[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"cm/hook\"",
                ),
                "notify.webhook[1].url_parameter",
                "is not an SSM parameter name",
            ),
            (
                with("", "", "[[notify.webhook]]\nkind = \"discord\""),
                "notify.webhook[0]",
                "missing required key `url_parameter`",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"/cm/hook\"\nevents = [\"idle\"]",
                ),
                "notify.webhook[0].events[0]",
                "\"idle\" is not an event",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"/cm/hook\"\nurl = \"x\"",
                ),
                "notify.webhook[0].url",
                "unknown key `url`",
            ),
        ]);
    }

    #[test]
    fn notify_targets_parse_with_their_defaults() {
        let c = parse(
            "agent.toml",
            &with(
                "",
                "",
                "[alerts]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\"\n[notify]\nplayers_every = \"2m\"\n[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"/cm/discord\"\n[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"ha-hook\"\nevents = [\"players\", \"online\", \"players\"]",
            ),
        )
        .unwrap();
        use EventKind::*;
        assert_eq!(
            c.alerts.unwrap().events,
            vec![IdleStop, Crash, MaxUptime, NeedsOperator, NeverStarted]
        );
        assert_eq!(c.notify.players_every, Duration::from_secs(120));
        let w = &c.notify.webhooks;
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].kind, WebhookKind::Discord);
        assert_eq!(w[0].url_parameter, "/cm/discord");
        assert_eq!(
            w[0].events,
            vec![
                Online,
                IdleStop,
                Crash,
                MaxUptime,
                NeedsOperator,
                NeverStarted
            ]
        );
        assert_eq!(w[1].kind, WebhookKind::Json);
        assert_eq!(w[1].events, vec![Players, Online], "duplicates folded");
        let none = parse("agent.toml", MINIMAL).unwrap();
        assert_eq!(none.notify, NotifyConfig::default());
    }

    /// `waking` is the wake function's notice: a webhook may list it (the stack's default list
    /// does), the agent leaves it out, and the SNS alerts, which the function never sends to,
    /// refuse it.
    #[test]
    fn a_webhook_may_list_the_wake_functions_waking_notice_and_the_agent_leaves_it_out() {
        let c = parse(
            "agent.toml",
            &with(
                "",
                "",
                "[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"/cm/discord\"\nevents = [\"waking\", \"online\", \"crash\"]",
            ),
        )
        .unwrap();
        assert_eq!(
            c.notify.webhooks[0].events,
            vec![EventKind::Online, EventKind::Crash]
        );
        let e = err(&with(
            "",
            "",
            "[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"/cm/discord\"\nevents = [\"online\", \"wakin\"]",
        ));
        assert_eq!(e.key, "notify.webhook[0].events[1]");
        assert!(e.to_string().contains("never_started, waking"), "{e}");
        let e = err(&with(
            "",
            "",
            "[alerts]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\"\nevents = [\"waking\"]",
        ));
        assert_eq!(e.key, "alerts.events[0]");
    }

    #[test]
    fn a_url_in_place_of_the_parameter_name_is_refused_without_repeating_it() {
        let secret = "https://discord.com/api/webhooks/123/sEcReTtOkEn";
        let text = with(
            "",
            "",
            &format!("[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"{secret}\""),
        );
        let e = err(&text);
        assert_eq!(e.key, "notify.webhook[0].url_parameter");
        let shown = e.to_string();
        assert!(shown.contains("SSM SecureString parameter"), "{shown}");
        assert!(!shown.contains("sEcReTtOkEn"), "{shown}");
        assert!(!shown.contains("discord.com"), "{shown}");
    }
}
