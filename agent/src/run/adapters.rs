//! What the run loop is given: the adapters (one narrow trait object per side effect), the
//! host, and what follows from them: the core's policy and the notification sinks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::activity::{PacketCounter, Probe};
use crate::aws::{Alerts, Capacity, DecisionLog, DnsRecord, InstanceMetadata, Metrics, Secrets};
use crate::config::Config;
use crate::container::Containers;
use crate::decide::{Policy, Problem, Readiness};
use crate::notify::{self, Sink};

/// The host the agent runs on.
#[async_trait::async_trait]
pub trait Host: Send + Sync + fmt::Debug {
    /// How long the instance has been up.
    fn uptime(&self) -> Duration;
    /// Whether the whole system is shutting down (rather than just the agent stopping).
    /// Bounded: not knowing is `false`.
    async fn system_stopping(&self) -> bool;
}

/// How long `systemctl is-system-running` may take before the answer is "not stopping".
pub const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(2);

/// The real host: `/proc/uptime` and `systemctl is-system-running`.
#[derive(Debug)]
pub struct LinuxHost {
    /// The `systemctl` to run (a path, or a name looked up on `PATH`).
    pub systemctl: std::path::PathBuf,
}

impl Default for LinuxHost {
    fn default() -> Self {
        Self {
            systemctl: "systemctl".into(),
        }
    }
}

#[async_trait::async_trait]
impl Host for LinuxHost {
    fn uptime(&self) -> Duration {
        std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::ZERO)
    }

    /// `systemctl is-system-running`, as a child process the runtime waits on without blocking,
    /// killed if it has not answered within [`SYSTEMCTL_TIMEOUT`] (a wedged D-Bus).
    async fn system_stopping(&self) -> bool {
        let child = tokio::process::Command::new(&self.systemctl)
            .arg("is-system-running")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(SYSTEMCTL_TIMEOUT, child).await {
            Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).trim() == "stopping",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Cannot run systemctl; taking the system as not stopping.");
                false
            }
            Err(_) => {
                tracing::warn!(
                    timeout_s = SYSTEMCTL_TIMEOUT.as_secs(),
                    "systemctl is-system-running did not answer; taking the system as not stopping."
                );
                false
            }
        }
    }
}

/// The real components the run loop drives. `None` means the feature is not configured (or,
/// for the counter, could not be opened: then every sample is unknown, which never idles).
#[derive(Debug)]
pub struct Adapters {
    pub counter: Result<Box<dyn PacketCounter>, String>,
    pub probe: Option<Arc<dyn Probe>>,
    pub containers: Option<Arc<dyn Containers>>,
    pub metadata: Option<Arc<dyn InstanceMetadata>>,
    pub dns: Option<Arc<dyn DnsRecord>>,
    pub capacity: Option<Arc<dyn Capacity>>,
    pub metrics: Option<Arc<dyn Metrics>>,
    pub alerts: Option<Arc<dyn Alerts>>,
    /// Where webhook URLs are read; `None` without webhook targets.
    pub secrets: Option<Arc<dyn Secrets>>,
    /// How webhooks are posted; `None` when the HTTPS client could not be built.
    pub http: Option<Arc<dyn notify::http::HttpPost>>,
    /// Where the decision lines are kept off the instance; `None` without `[decision_log]`
    /// (then the journal alone has them).
    pub decision_log: Option<Arc<dyn DecisionLog>>,
    /// What went wrong at boot that an operator must fix (told once the notifier runs).
    pub problems: Vec<Problem>,
    /// The addresses players connect to, for the `online` message.
    pub addresses: Vec<String>,
    pub host: Arc<dyn Host>,
}

/// The policy for the core, from the config and the adapters that exist.
pub fn policy(config: &Config, adapters: &Adapters) -> Policy {
    let scaling = config.scaling.as_ref();
    Policy {
        min_packets_per_second: config.activity.min_packets_per_second,
        sample_interval: config.activity.sample_interval,
        idle_after: config.activity.idle_after,
        boot_grace: config.activity.boot_grace,
        unused_after: config.activity.unused_after,
        wake_budget: scaling.and_then(|s| s.unused_wakes_per_day),
        crashes_before_shutdown: config.container.crashes_before_shutdown,
        max_uptime: scaling.map(|s| s.max_uptime),
        stop_on_max_uptime: scaling.is_some_and(|s| s.stop_on_max_uptime),
        max_uptime_backstop: scaling.is_some_and(|s| s.max_uptime_backstop),
        scaling: scaling.is_some() && adapters.capacity.is_some(),
        lifecycle_hook: scaling.is_some_and(|s| s.lifecycle_hook.is_some())
            && adapters.capacity.is_some(),
        dns: config.dns.is_some() && adapters.dns.is_some(),
        metrics_interval: config
            .metrics
            .as_ref()
            .filter(|_| adapters.metrics.is_some())
            .map(|m| m.interval),
        launch_hook: scaling.is_some_and(|s| s.launch_hook.is_some())
            && adapters.capacity.is_some(),
        prepare_image: config.container.image.is_some() && adapters.containers.is_some(),
        start_within: config
            .container
            .start_within
            .filter(|_| adapters.containers.is_some()),
        ready_when: if adapters.probe.is_some() {
            Readiness::ProbeAnswers
        } else if adapters.containers.is_some() {
            Readiness::ContainerRuns
        } else {
            Readiness::InService
        },
    }
}

/// The notification sinks the config asks for and the adapters allow.
pub(super) fn sinks(
    config: &Config,
    alerts: Option<Arc<dyn Alerts>>,
    secrets: Option<Arc<dyn Secrets>>,
    http: Option<Arc<dyn notify::http::HttpPost>>,
) -> Vec<Arc<dyn Sink>> {
    let mut out: Vec<Arc<dyn Sink>> = Vec::new();
    if let (Some(alerts), Some(a)) = (alerts, config.alerts.as_ref()) {
        out.push(Arc::new(notify::SnsSink::new(alerts, a.events.clone())));
    }
    if let (Some(secrets), Some(http)) = (secrets, http) {
        for (i, w) in config.notify.webhooks.iter().enumerate() {
            out.push(Arc::new(notify::webhook::Webhook::new(
                i,
                w.clone(),
                secrets.clone(),
                http.clone(),
            )));
        }
    } else if !config.notify.webhooks.is_empty() {
        error!(
            event = "webhook_unavailable",
            webhooks = config.notify.webhooks.len(),
            "Webhook notifications are off: no SSM client or HTTPS client (see the errors above)."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn system_stopping_reads_systemctl_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let host = |body: &str, name: &str| LinuxHost {
            systemctl: script(dir.path(), name, body),
        };
        assert!(host("echo stopping", "stopping").system_stopping().await);
        assert!(!host("echo running", "running").system_stopping().await);
        assert!(
            !host("echo degraded; exit 1", "degraded")
                .system_stopping()
                .await
        );
        let missing = LinuxHost {
            systemctl: dir.path().join("no-such-systemctl"),
        };
        assert!(!missing.system_stopping().await);
        // A systemctl that hangs (a wedged D-Bus) is killed at the bound.
        let start = tokio::time::Instant::now();
        assert!(!host("sleep 30", "hangs").system_stopping().await);
        let took = start.elapsed();
        assert!(
            took >= SYSTEMCTL_TIMEOUT && took < SYSTEMCTL_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
    }
}
