//! How one run is asked for and ended: its flags, the two shutdown signals, the drain's budget
//! and how a run can fail.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Flags for one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Log every world-changing action instead of performing it.
    pub dry_run: bool,
}

/// The two shutdown signals: the first asks for a graceful drain, the second forces the end.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub force: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the drain did not finish within {0:?}")]
    DrainTimeout(Duration),
    #[error("stopped by a second signal before the drain finished")]
    Forced,
}

/// How long the drain after a signal may take: the game's stop, plus time for DNS, metrics
/// and the lifecycle action. The systemd unit's `TimeoutStopSec` is set above this.
pub fn drain_budget(config: &Config) -> Duration {
    config.container.stop_timeout + Duration::from_secs(90)
}
