//! `[decision_log]`: where the agent's decision lines are kept off the instance (a CloudWatch
//! Logs group), so that `cloud/cm logs` still shows them after the instance is gone.

use std::time::Duration;

use serde::Deserialize;

use super::check::Ctx;
use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecisionLog {
    log_group: String,
    #[serde(default = "d_interval")]
    interval: String,
}

pub(super) fn d_interval() -> String {
    "5s".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLogConfig {
    /// The log group; each instance writes its own stream, named after its instance id.
    pub log_group: String,
    /// How often the lines gathered are sent (one PutLogEvents call), and at the agent's end.
    pub interval: Duration,
}

/// CloudWatch Logs' rule for a group's name: 1 to 512 of `[.\-_/#A-Za-z0-9]`.
fn is_log_group_name(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b))
}

impl RawDecisionLog {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<DecisionLogConfig, ConfigError> {
        if !is_log_group_name(&self.log_group) {
            return Err(cx.err(
                "decision_log.log_group",
                format!(
                    "{:?} is not a log group name (expected 1 to 512 letters, digits and . _ - / #, like \"/container-manager/valheim/agent\")",
                    self.log_group
                ),
            ));
        }
        let interval = cx.duration(
            "decision_log.interval",
            &self.interval,
            Duration::from_secs(1),
            Duration::from_secs(300),
        )?;
        Ok(DecisionLogConfig {
            log_group: self.log_group,
            interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{assert_rejected, with};
    use std::time::Duration;

    #[test]
    fn a_group_and_the_default_interval() {
        let c = parse(
            "agent.toml",
            &with(
                "",
                "",
                "[decision_log]\nlog_group = \"/container-manager/v/agent\"",
            ),
        )
        .unwrap();
        let d = c.decision_log.clone().unwrap();
        assert_eq!(d.log_group, "/container-manager/v/agent");
        assert_eq!(d.interval, Duration::from_secs(5));
        assert!(c.uses_aws(), "the lines go to CloudWatch Logs");
    }

    /// Each bad input is rejected with its key path in the message.
    #[test]
    fn bad_inputs_name_their_key() {
        assert_rejected(&[
            (
                with("", "", "[decision_log]\nlog_group = \"\""),
                "decision_log.log_group",
                "not a log group name",
            ),
            (
                with("", "", "[decision_log]\nlog_group = \"a b\""),
                "decision_log.log_group",
                "not a log group name",
            ),
            (
                with(
                    "",
                    "",
                    "[decision_log]\nlog_group = \"/g\"\ninterval = \"10m\"",
                ),
                "decision_log.interval",
                "out of range",
            ),
            (
                with("", "", "[decision_log]\ninterval = \"5s\""),
                "decision_log",
                "log_group",
            ),
        ]);
    }
}
