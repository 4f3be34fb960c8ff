//! The game container, seen through the Docker API.
//!
//! [`Containers`] is the one trait the run loop uses: a watcher that turns Docker's events
//! into classified [`ContainerEvent`](crate::decide::ContainerEvent)s, and the graceful stop.
//!
//! - [`classify`]: the pure classification (which events are ours, stop or crash), unit-tested.
//! - [`docker`]: the bollard adapter: connection, event stream, reconnects and reconcile,
//!   crash log tails, the pre-stop command and the stop.
//! - [`cli`]: the `containers` diagnostic command.
//! - [`traits`]: the [`Containers`] trait and what it returns (the adapters' side of it).

pub mod classify;
pub mod cli;
pub mod docker;
pub mod traits;

use std::sync::Arc;

use crate::config::ContainerConfig;

pub use docker::{DockerContainers, graceful_stop_bound, pre_stop_timeout};
pub use traits::{ContainerError, Containers, PreStopReport, StopReport};

/// A Docker client (`DOCKER_HOST`, else `/var/run/docker.sock`) for the configured game
/// container. Nothing is sent yet: the watcher connects (and negotiates the API version) on
/// its own, retrying, so a daemon that starts after the agent is fine. This fails only for an
/// endpoint bollard cannot use.
pub fn docker_for(config: &ContainerConfig) -> Result<Arc<dyn Containers>, ContainerError> {
    Ok(Arc::new(DockerContainers::from_env(config.clone())?))
}
