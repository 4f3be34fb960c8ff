//! `[metrics]`: the CloudWatch namespace and how often metrics are sent.

use std::time::Duration;

use serde::Deserialize;

use super::check::{Ctx, HOUR};
use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    #[serde(default = "d_namespace")]
    namespace: String,
    #[serde(default = "d_metrics_interval")]
    interval: String,
}

fn d_namespace() -> String {
    "ContainerManager".into()
}
fn d_metrics_interval() -> String {
    "60s".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub namespace: String,
    pub interval: Duration,
}

impl RawMetrics {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<MetricsConfig, ConfigError> {
        let ns = self.namespace.trim();
        if ns.is_empty() || ns.len() > 255 || ns.starts_with("AWS/") || ns.starts_with(':') {
            return Err(cx.err(
                "metrics.namespace",
                format!(
                    "{:?} is not a usable namespace (expected a name like \"ContainerManager\", not starting with AWS/)",
                    self.namespace
                ),
            ));
        }
        let interval = cx.duration(
            "metrics.interval",
            &self.interval,
            Duration::from_secs(1),
            HOUR,
        )?;
        Ok(MetricsConfig {
            namespace: ns.to_string(),
            interval,
        })
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
                with("", "", "[metrics]\nnamespace = \"AWS/EC2\""),
                "metrics.namespace",
                "AWS/",
            ),
            (
                with("", "", "[metrics]\ninterval = \"2h\""),
                "metrics.interval",
                "out of range",
            ),
        ]);
    }
}
