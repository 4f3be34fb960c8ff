//! `[container]`: which container is the game, and how it is stopped.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::check::{Ctx, DAY, HOUR, optional};
use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainer {
    ecs_container_name: Option<String>,
    docker_name: Option<String>,
    #[serde(default = "d_stop_timeout")]
    stop_timeout: String,
    #[serde(default)]
    pre_stop_command: Vec<String>,
    #[serde(default = "d_crashes")]
    crashes_before_shutdown: i64,
    #[serde(default = "d_log_lines")]
    alert_log_lines: i64,
    #[serde(default)]
    image: String,
    #[serde(default = "d_start_within")]
    start_within: String,
}

fn d_stop_timeout() -> String {
    "120s".into()
}
fn d_crashes() -> i64 {
    1
}
fn d_log_lines() -> i64 {
    20
}
fn d_start_within() -> String {
    "10m".into()
}

/// How the game container is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerSelector {
    /// By the ECS label `com.amazonaws.ecs.container-name`.
    EcsContainerName(String),
    /// By the plain Docker container name.
    DockerName(String),
}

impl fmt::Display for ContainerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcsContainerName(n) => write!(f, "ECS container {n:?}"),
            Self::DockerName(n) => write!(f, "Docker container {n:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub selector: ContainerSelector,
    pub stop_timeout: Duration,
    pub pre_stop_command: Vec<String>,
    pub crashes_before_shutdown: u32,
    pub alert_log_lines: usize,
    /// The game's image, pulled while the instance is prepared for a warm pool. `None`: none.
    pub image: Option<String>,
    /// How long after going into service a container of the game must have run before the
    /// agent calls it `never_started` (and asks Docker why). `None`: "0s", the check is off.
    pub start_within: Option<Duration>,
}

fn non_empty_name(cx: &Ctx<'_>, key: &str, v: &str) -> Result<String, ConfigError> {
    if v.trim().is_empty() {
        return Err(cx.err(key, "must not be empty (expected a container name)"));
    }
    Ok(v.to_string())
}

impl RawContainer {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<ContainerConfig, ConfigError> {
        let selector = match (self.ecs_container_name, self.docker_name) {
            (Some(n), None) => ContainerSelector::EcsContainerName(non_empty_name(
                cx,
                "container.ecs_container_name",
                &n,
            )?),
            (None, Some(n)) => {
                ContainerSelector::DockerName(non_empty_name(cx, "container.docker_name", &n)?)
            }
            (Some(_), Some(_)) => {
                return Err(cx.err(
                    "container",
                    "both ecs_container_name and docker_name are set (expected exactly one)",
                ));
            }
            (None, None) => {
                return Err(cx.err(
                    "container",
                    "neither ecs_container_name nor docker_name is set (expected exactly one)",
                ));
            }
        };
        let stop_timeout = cx.duration(
            "container.stop_timeout",
            &self.stop_timeout,
            Duration::from_secs(1),
            HOUR,
        )?;
        if let Some(first) = self.pre_stop_command.first()
            && first.trim().is_empty()
        {
            return Err(cx.err(
                "container.pre_stop_command[0]",
                "the program name is empty (expected e.g. [\"rcon-cli\", \"save-all\"])",
            ));
        }
        let crashes_before_shutdown = match u32::try_from(self.crashes_before_shutdown) {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(cx.err(
                    "container.crashes_before_shutdown",
                    format!(
                        "{} is out of range (expected a whole number from 1 to 100)",
                        self.crashes_before_shutdown
                    ),
                ));
            }
        };
        let alert_log_lines = match usize::try_from(self.alert_log_lines) {
            Ok(n) if n <= 1000 => n,
            _ => {
                return Err(cx.err(
                    "container.alert_log_lines",
                    format!(
                        "{} is out of range (expected a whole number from 0 to 1000)",
                        self.alert_log_lines
                    ),
                ));
            }
        };
        let image = optional(self.image);
        if let Some(i) = &image
            && (i.len() > 255
                || i.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
        {
            return Err(cx.err(
                "container.image",
                format!("{i:?} is not an image reference (expected for example repo/name:tag)"),
            ));
        }
        let start_within = cx.duration(
            "container.start_within",
            &self.start_within,
            Duration::ZERO,
            DAY,
        )?;
        Ok(ContainerConfig {
            selector,
            stop_timeout,
            pre_stop_command: self.pre_stop_command,
            crashes_before_shutdown,
            alert_log_lines,
            image,
            start_within: (!start_within.is_zero()).then_some(start_within),
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
            (with("bogus = 1", "", ""), "container.bogus", "unknown key"),
            (
                with("stop_timeout = \"soon\"", "", ""),
                "container.stop_timeout",
                "not a duration",
            ),
            (
                with("stop_timeout = \"0s\"", "", ""),
                "container.stop_timeout",
                "out of range",
            ),
            (
                with("stop_timeout = 120", "", ""),
                "container.stop_timeout",
                "invalid type",
            ),
            (
                with("docker_name = \"x\"", "", ""),
                "container",
                "exactly one",
            ),
            (
                with("crashes_before_shutdown = 0", "", ""),
                "container.crashes_before_shutdown",
                "1 to 100",
            ),
            (
                with("alert_log_lines = -1", "", ""),
                "container.alert_log_lines",
                "0 to 1000",
            ),
            (
                with("pre_stop_command = [\"\"]", "", ""),
                "container.pre_stop_command[0]",
                "empty",
            ),
            (
                with("start_within = \"later\"", "", ""),
                "container.start_within",
                "not a duration",
            ),
            (
                with("start_within = \"2d\"", "", ""),
                "container.start_within",
                "out of range",
            ),
        ]);
    }
}
