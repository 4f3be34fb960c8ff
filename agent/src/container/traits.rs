//! What the run loop asks of the game container: the [`Containers`] trait, and the reports and
//! errors it returns. The adapters implement it; nothing here depends on them.

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

/// Docker's errors are all retried at the usual pace (none is permanent).
impl crate::retry::Failure for ContainerError {}

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
