//! `[alerts]`: the SNS topic for the events an operator should hear about.

use serde::Deserialize;

use super::check::{Ctx, events, optional};
use super::error::ConfigError;
use crate::decide::EventKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(default)]
    sns_topic_arn: String,
    #[serde(default = "d_sns_events")]
    events: Vec<String>,
}

pub(super) fn d_sns_events() -> Vec<String> {
    [
        "idle_stop",
        "crash",
        "max_uptime",
        "needs_operator",
        "never_started",
    ]
    .map(String::from)
    .to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    pub sns_topic_arn: String,
    /// The events sent to the topic.
    pub events: Vec<EventKind>,
}

impl RawAlerts {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<Option<AlertsConfig>, ConfigError> {
        let Some(arn) = optional(self.sns_topic_arn) else {
            return Ok(None);
        };
        let parts: Vec<&str> = arn.split(':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "sns"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && !parts[5].is_empty();
        if !ok {
            return Err(cx.err(
                "alerts.sns_topic_arn",
                format!(
                    "{arn:?} is not an SNS topic ARN (expected arn:aws:sns:REGION:ACCOUNT:NAME, or empty for no alerts)"
                ),
            ));
        }
        let events = events(cx, "alerts.events", &self.events, &[])?;
        Ok(Some(AlertsConfig {
            sns_topic_arn: arn,
            events,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_rejected, with};

    /// Each bad input is rejected with its key path in the message.
    #[test]
    fn bad_inputs_name_their_key() {
        assert_rejected(&[
            (
                with("", "", "[alerts]\nsns_topic_arn = \"topic\""),
                "alerts.sns_topic_arn",
                "SNS topic ARN",
            ),
            (
                with(
                    "",
                    "",
                    "[alerts]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\"\nevents = [\"crash\", \"online!\"]",
                ),
                "alerts.events[1]",
                "is not an event (expected one of online, players, idle_stop, crash, max_uptime, needs_operator, never_started)",
            ),
        ]);
    }
}
