//! The game container, seen through the Docker API.
//!
//! [`Containers`] is the one trait the run loop uses: a watcher that turns Docker's events
//! into classified [`ContainerEvent`]s, and the graceful stop.
//!
//! - [`classify`]: the pure classification (which events are ours, stop or crash), unit-tested.
//! - [`docker`]: the bollard adapter: connection, event stream, reconnects and reconcile,
//!   crash log tails, the pre-stop command and the stop.
//! - [`cli`]: the `containers` diagnostic command.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decide::ContainerEvent;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("Docker API call {call} failed: {reason}")]
    Docker { call: &'static str, reason: String },
    #[error("no game container ({selector}) was found")]
    NotFound { selector: String },
}

/// What the pre-stop command did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreStopReport {
    /// `None` when it timed out or could not be started.
    pub exit_code: Option<i64>,
    /// Its combined output, truncated.
    pub output: String,
    pub timed_out: bool,
}

/// How a graceful stop went. The journal line built from it tells whether the world was saved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StopReport {
    /// The container that was stopped; `None` when no game container was running.
    pub container: Option<String>,
    /// `None` when no pre-stop command is configured (or no container ran).
    pub pre_stop: Option<PreStopReport>,
    /// True when the game exited within `stop_timeout`; false when it had to be killed.
    pub exited_on_its_own: bool,
    pub exit_code: Option<i64>,
    pub duration: Duration,
}

/// The game container: its events, and stopping it gracefully.
#[async_trait]
pub trait Containers: Send + Sync + std::fmt::Debug {
    /// Watches the game container until `cancel` fires, sending every classified event.
    /// Reconnects by itself; it returns only on cancellation.
    async fn watch(&self, events: mpsc::Sender<ContainerEvent>, cancel: CancellationToken);

    /// Runs the pre-stop command, then stops the container with the configured timeout.
    /// The exit this causes is reported by `watch` as requested, never as a crash.
    async fn graceful_stop(&self) -> Result<StopReport, ContainerError>;

    /// Makes sure `image` is in the local image store, pulling it if it is not. Returns
    /// whether it pulled.
    async fn prepare_image(&self, image: &str) -> Result<bool, ContainerError>;
}

pub mod classify;
pub mod cli;
pub mod docker;

use std::sync::Arc;

use crate::config::ContainerConfig;

pub use docker::{DockerContainers, graceful_stop_bound, pre_stop_timeout};

/// A Docker client (`DOCKER_HOST`, else `/var/run/docker.sock`) for the configured game
/// container. Nothing is sent yet: the watcher connects (and negotiates the API version) on
/// its own, retrying, so a daemon that starts after the agent is fine. This fails only for an
/// endpoint bollard cannot use.
pub fn docker_for(config: &ContainerConfig) -> Result<Arc<dyn Containers>, ContainerError> {
    Ok(Arc::new(DockerContainers::from_env(config.clone())?))
}
