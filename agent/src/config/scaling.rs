//! `[scaling]`: the Auto Scaling group, its lifecycle hooks and the uptime limit.

use std::time::Duration;

use serde::Deserialize;

use super::check::{Ctx, optional};
use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaling {
    #[serde(default)]
    auto_scaling_group: String,
    #[serde(default)]
    lifecycle_hook: String,
    #[serde(default)]
    launch_hook: String,
    #[serde(default = "d_max_uptime")]
    max_uptime: String,
    #[serde(default)]
    stop_on_max_uptime: bool,
    #[serde(default = "d_backstop")]
    max_uptime_backstop: bool,
    #[serde(default = "d_unused_wakes")]
    unused_wakes_per_day: i64,
}

fn d_max_uptime() -> String {
    "8h".into()
}
fn d_backstop() -> bool {
    true
}
fn d_unused_wakes() -> i64 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingConfig {
    /// `None`: look the group up from the instance id.
    pub auto_scaling_group: Option<String>,
    /// `None`: no termination hook to complete.
    pub lifecycle_hook: Option<String>,
    /// The launching hook (warm pools): completed once the instance is prepared for the pool,
    /// and as soon as it enters service. `None`: no launching hook.
    pub launch_hook: Option<String>,
    pub max_uptime: Duration,
    /// Past `max_uptime`, stop whatever the players (otherwise: see `max_uptime_backstop`).
    pub stop_on_max_uptime: bool,
    /// Past `max_uptime`, stop a server with no confirmed player (the probe counted one, game
    /// traffic, or the keep-awake file, within `idle_after`); one with a player only alerts.
    /// On by default: errors in measuring keep a server up, but never past `max_uptime`.
    pub max_uptime_backstop: bool,
    /// The wake budget: after this many wakes in a day that nobody joined, lookups stop waking
    /// the server (the wake function reads the ledger the agent keeps on the group). `None`:
    /// 0, no budget.
    pub unused_wakes_per_day: Option<u32>,
}

impl RawScaling {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<ScalingConfig, ConfigError> {
        let max_uptime = cx.duration(
            "scaling.max_uptime",
            &self.max_uptime,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        )?;
        let group = optional(self.auto_scaling_group);
        if let Some(g) = &group
            && g.len() > 255
        {
            return Err(cx.err(
                "scaling.auto_scaling_group",
                "is longer than 255 characters (expected an Auto Scaling group name)",
            ));
        }
        let hook_name = |key: &str, value: String| {
            let hook = optional(value);
            if let Some(h) = &hook
                && (h.len() > 255
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b)))
            {
                return Err(cx.err(
                    key,
                    format!(
                        "{h:?} is not a lifecycle hook name (expected letters, digits, -, _ or /)"
                    ),
                ));
            }
            Ok(hook)
        };
        let hook = hook_name("scaling.lifecycle_hook", self.lifecycle_hook)?;
        let launch_hook = hook_name("scaling.launch_hook", self.launch_hook)?;
        let unused_wakes_per_day = match u32::try_from(self.unused_wakes_per_day) {
            Ok(n) if n <= 20 => (n > 0).then_some(n),
            _ => {
                return Err(cx.err(
                    "scaling.unused_wakes_per_day",
                    format!(
                        "{} is out of range (expected a whole number from 0, no budget, to 20)",
                        self.unused_wakes_per_day
                    ),
                ));
            }
        };
        Ok(ScalingConfig {
            auto_scaling_group: group,
            lifecycle_hook: hook,
            launch_hook,
            max_uptime,
            stop_on_max_uptime: self.stop_on_max_uptime,
            max_uptime_backstop: self.max_uptime_backstop,
            unused_wakes_per_day,
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
                with("", "", "[scaling]\nunused_wakes_per_day = 21"),
                "scaling.unused_wakes_per_day",
                "0, no budget, to 20",
            ),
            (
                with("", "", "[scaling]\nmax_uptime = \"10s\""),
                "scaling.max_uptime",
                "out of range",
            ),
            (
                with("", "", "[scaling]\nlifecycle_hook = \"a b\""),
                "scaling.lifecycle_hook",
                "lifecycle hook name",
            ),
            (
                with("", "", "[scaling]\nstop_on_max_uptime = \"yes\""),
                "scaling.stop_on_max_uptime",
                "invalid type",
            ),
            (
                with("", "", "[scaling]\nmax_uptime_backstop = 1"),
                "scaling.max_uptime_backstop",
                "invalid type",
            ),
        ]);
    }
}
