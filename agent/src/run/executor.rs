//! The executor: runs the core's actions as owned tasks, with retries, and reports their
//! completions back to the run loop. Notifications go to the notifier, which never waits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::options::RunOptions;
use crate::aws::{Capacity, DnsRecord, Metrics, RevertOutcome};
use crate::config::Config;
use crate::container::{ContainerError, Containers, StopReport};
use crate::decide::{
    Action, Alert, Completion, DrainCause, MetricsBatch, Problem, ScaleReason, StopFacts,
    WakeOutcome,
};
use crate::notify::Notifier;
use crate::retry::{CALL_TIMEOUT, Failed, retry, retry_within};

/// After this many failed attempts of CompleteLifecycleAction an alert goes out (it is still
/// retried).
pub const LIFECYCLE_STUCK_AFTER: u32 = 3;
/// After this many failed attempts of a DNS update or a scale-in (about a minute of failures,
/// with the backoff) an operator is told; a short outage of the AWS APIs stays quiet.
pub const STUCK_AFTER: u32 = 8;
/// A pull of the game's image while preparing for the warm pool: bound per attempt, attempts.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const PULL_ATTEMPTS: u32 = 3;
/// How long the agent waits on Docker when it asks why the game never ran (a pull of the
/// image): a pull still going after this is a slow start, not a failure.
pub const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at writing a note on the group (`on_group`).
const LEDGER_ATTEMPTS: u32 = 5;

/// Runs the core's actions as owned tasks and reports completions back.
#[derive(Debug)]
pub(super) struct Executor {
    pub(super) options: RunOptions,
    pub(super) config: Arc<Config>,
    pub(super) containers: Option<Arc<dyn Containers>>,
    pub(super) dns: Option<Arc<dyn DnsRecord>>,
    pub(super) capacity: Option<Arc<dyn Capacity>>,
    pub(super) metrics: Option<Arc<dyn Metrics>>,
    pub(super) notifier: Notifier,
    pub(super) done: mpsc::UnboundedSender<Completion>,
    pub(super) cancel: CancellationToken,
    pub(super) tasks: JoinSet<()>,
}

/// Reports a must-happen call that keeps failing, once: at its first permanent failure (AWS
/// refused it; the fix is named), or at its `after`th transient one (it is still retried).
fn stuck_after(
    done: &mpsc::UnboundedSender<Completion>,
    what: &'static str,
    after: u32,
    problem: fn(String) -> Problem,
) -> impl FnMut(&Failed<'_>) + use<> {
    let done = done.clone();
    let mut told = false;
    move |f: &Failed<'_>| {
        let stuck = match f.fix {
            Some(fix) => Some(refused(what, f, fix)),
            None if f.attempt == after => Some(problem(f.reason.to_string())),
            None => None,
        };
        if let Some(p) = stuck
            && !std::mem::replace(&mut told, true)
        {
            let _ = done.send(Completion::Stuck(p));
        }
    }
}

/// Reports a permanent failure of a call nobody waits on (metrics, notes on the group), once
/// per loop; the core tells the operator once per fix.
fn refused_once(
    done: &mpsc::UnboundedSender<Completion>,
    what: &'static str,
) -> impl FnMut(&Failed<'_>) + use<> {
    let done = done.clone();
    let mut told = false;
    move |f: &Failed<'_>| {
        if let Some(fix) = f.fix
            && !std::mem::replace(&mut told, true)
        {
            let _ = done.send(Completion::Stuck(refused(what, f, fix)));
        }
    }
}

fn refused(what: &str, f: &Failed<'_>, fix: &str) -> Problem {
    Problem::Refused {
        what: what.to_string(),
        fix: fix.to_string(),
        error: f.reason.to_string(),
    }
}

impl Executor {
    pub(super) fn report(&self, c: Completion) {
        // The loop may already have ended; then nobody needs the completion.
        let _ = self.done.send(c);
    }

    /// Runs one action of the core: one method per action, each logging its decision.
    pub(super) fn dispatch(&mut self, action: Action) {
        match action {
            Action::Exit => {}
            Action::UpdateDns => self.update_dns(),
            Action::ScaleToZero(reason, facts) => self.scale_in(reason, facts),
            Action::Alert(alert) => self.alert(alert),
            Action::GracefulStop { cause, heartbeat } => self.graceful_stop(cause, heartbeat),
            Action::RevertDns => self.revert_dns(),
            Action::PublishMetrics { batch, flush } => self.publish_metrics(batch, flush),
            Action::CompleteLifecycle => self.complete_lifecycle(),
            Action::PrepareForPool => self.prepare_for_pool(),
            Action::CompleteLaunch => self.complete_launch(),
            Action::DiagnoseStart { waited } => self.diagnose_start(waited),
            Action::RecordWake { joined } => self.record_wake(joined),
            Action::RecordWakeOutcome(wake) => self.record_wake_outcome(wake),
        }
    }

    /// Points the record at this instance (UPSERT), retried until it holds.
    fn update_dns(&mut self) {
        let dry = self.options.dry_run;
        let Some(dns) = self.dns.clone() else { return };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        let record = self
            .config
            .dns
            .as_ref()
            .map(|d| d.record_name.clone())
            .unwrap_or_default();
        if dry {
            info!(event = "dns_updated", dry_run = true, record = %record, "Would point the record at this instance.");
            self.report(Completion::DnsUpdated);
            return;
        }
        let what = "point the record at this instance";
        let on_failure = stuck_after(&self.done, what, STUCK_AFTER, |error| Problem::DnsStuck {
            error,
        });
        self.tasks.spawn(async move {
            if let Some(ip) = retry(what, None, &cancel, on_failure, || dns.point_here()).await {
                info!(event = "dns_updated", record = %record, ip = %ip, "Record points at this instance.");
                let _ = done.send(Completion::DnsUpdated);
            }
        });
    }

    /// Scales the group to zero: the one call that ends the instance.
    fn scale_in(&mut self, reason: ScaleReason, facts: StopFacts) {
        let dry = self.options.dry_run;
        info!(event = "scale_in_requested", reason = reason.kind(), detail = %reason, dry_run = dry, "Scaling to zero: {reason}.");
        let Some(cap) = self.capacity.clone() else {
            return;
        };
        if dry {
            self.report(Completion::ScaledIn);
            return;
        }
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        let what = "set the group's desired capacity to 0";
        let on_failure = stuck_after(&self.done, what, STUCK_AFTER, |error| {
            Problem::ScaleInStuck { error }
        });
        self.tasks.spawn(async move {
            if retry(what, None, &cancel, on_failure, || cap.scale_to_zero())
                .await
                .is_some()
            {
                info!(event = "scale_in_done", "Desired capacity set to 0.");
                let _ = done.send(Completion::ScaledIn);
                // Why, kept on the group for the operator's `status` (a few attempts: a missing
                // record costs an explanation, nothing else).
                let at = unix_now();
                let (kind, detail) = (reason.kind(), reason.to_string());
                if on_group("record the stop's reason", &done, &cancel, || {
                    cap.record_stop(at, kind, facts, &detail)
                })
                .await
                .is_some()
                {
                    info!(
                        event = "stop_recorded",
                        reason = kind,
                        "The stop's reason is kept on the group."
                    );
                }
            }
        });
    }

    /// Writes the wake's outcome into the wake budget's ledger on the group (a few attempts: a
    /// ledger that misses one entry lets one more wake through, nothing worse).
    fn record_wake(&mut self, joined: bool) {
        let dry = self.options.dry_run;
        let Some(cap) = self.capacity.clone().filter(|_| !dry) else {
            info!(
                event = "wake_recorded",
                joined,
                dry_run = dry,
                "Would record this wake's outcome."
            );
            self.report(Completion::WakeRecorded { unused_today: None });
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            let now = unix_now();
            let unused_today = if joined {
                let cleared = on_group("clear the wake ledger", &done, &cancel, || {
                    cap.clear_unused_wakes()
                })
                .await;
                if cleared.is_some() {
                    info!(
                        event = "wake_recorded",
                        joined, "A player came: the wake budget starts again."
                    );
                }
                None
            } else {
                let n = on_group("record a wake nobody joined", &done, &cancel, || {
                    cap.record_unused_wake(now)
                })
                .await;
                if let Some(n) = n {
                    info!(
                        event = "wake_recorded",
                        joined,
                        unused_today = n,
                        "Recorded a wake nobody joined."
                    );
                }
                n
            };
            let _ = done.send(Completion::WakeRecorded { unused_today });
        });
    }

    /// Keeps the wake's outcome on the group for the operator's `status` (a few attempts: a
    /// missing entry costs a line of history, nothing else).
    fn record_wake_outcome(&mut self, wake: WakeOutcome) {
        let minutes = wake.up_for.as_secs().div_ceil(60);
        let dry = self.options.dry_run;
        let Some(cap) = self.capacity.clone().filter(|_| !dry) else {
            info!(
                event = "wake_outcome",
                joined = wake.joined,
                minutes,
                dry_run = dry,
                "Would keep this wake's outcome on the group."
            );
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            let at = unix_now();
            if on_group("keep this wake's outcome", &done, &cancel, || {
                cap.record_wake_outcome(at, minutes, wake.joined)
            })
            .await
            .is_some()
            {
                info!(
                    event = "wake_outcome",
                    joined = wake.joined,
                    minutes,
                    "This wake's outcome is kept on the group."
                );
            }
        });
    }

    /// Hands an alert to the notifier.
    fn alert(&mut self, alert: Alert) {
        // The game is up for players: kept on the group for the operator's `status`.
        if matches!(alert, Alert::Online { .. })
            && let Some(cap) = self.capacity.clone().filter(|_| !self.options.dry_run)
        {
            let (done, cancel) = (self.done.clone(), self.cancel.clone());
            self.tasks.spawn(async move {
                let at = unix_now();
                if on_group("record that the game is up", &done, &cancel, || {
                    cap.record_online(at)
                })
                .await
                .is_some()
                {
                    info!(
                        event = "online_recorded",
                        "The game being up is kept on the group."
                    );
                }
            });
        }
        // Sent apart from the loop: never waits, never blocks an action.
        self.notifier.notify(alert);
    }

    /// Saves and stops the game; with `heartbeat`, keeps the lifecycle action alive meanwhile.
    fn graceful_stop(&mut self, cause: DrainCause, heartbeat: bool) {
        let dry = self.options.dry_run;
        info!(cause = %cause, dry_run = dry, "Stopping the game gracefully because {cause}.");
        let Some(containers) = self.containers.clone().filter(|_| !dry) else {
            info!(
                event = "graceful_stop_done",
                dry_run = dry,
                saved = false,
                "No container stop performed."
            );
            self.report(Completion::GracefulStopDone { saved: None });
            return;
        };
        let cap = self.capacity.clone().filter(|_| heartbeat);
        let stop_timeout = self.config.container.stop_timeout;
        let every = heartbeat_every(stop_timeout);
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            let beats = heartbeats(cap, every);
            // The stop waits for the pre-stop command and the game's exit: bounded by
            // them, not by CALL_TIMEOUT.
            let bound = crate::container::graceful_stop_bound(stop_timeout);
            let stop = retry_within(
                "graceful stop",
                bound,
                Some(3),
                &cancel,
                |_| {},
                || containers.graceful_stop(),
            );
            let report = tokio::select! {
                r = stop => r,
                () = beats => None,
            };
            let saved = saved(report.as_ref());
            log_stopped(report.as_ref());
            let _ = done.send(Completion::GracefulStopDone { saved });
        });
    }

    /// Sets the record back to the placeholder, if it still holds our address.
    fn revert_dns(&mut self) {
        let dry = self.options.dry_run;
        let Some(dns) = self.dns.clone().filter(|_| !dry) else {
            info!(
                event = "dns_reverted",
                dry_run = dry,
                "Would set the record back to the placeholder."
            );
            self.report(Completion::DnsReverted);
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        let what = "set the record back to the placeholder";
        let on_failure = stuck_after(&self.done, what, STUCK_AFTER, |error| {
            Problem::RevertStuck { error }
        });
        self.tasks.spawn(async move {
            match retry(what, None, &cancel, on_failure, || dns.revert()).await {
                Some(RevertOutcome::Reverted) => info!(
                    event = "dns_reverted",
                    "Record set back to the placeholder."
                ),
                Some(RevertOutcome::NotOurs { current }) => info!(
                    event = "dns_reverted",
                    left_alone = true,
                    current = current.as_deref().unwrap_or("none"),
                    "Record no longer holds our address; left alone."
                ),
                None => return,
            }
            let _ = done.send(Completion::DnsReverted);
        });
    }

    /// Publishes one batch of metrics; a `flush` is reported back when done.
    fn publish_metrics(&mut self, batch: MetricsBatch, flush: bool) {
        let dry = self.options.dry_run;
        let Some(metrics) = self.metrics.clone().filter(|_| !dry) else {
            if flush {
                self.report(Completion::MetricsFlushed);
            }
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        let mut refused = refused_once(&self.done, "publish the metrics");
        let last = std::sync::Arc::new(std::sync::Mutex::new(None::<(String, bool)>));
        let seen = last.clone();
        let on_failure = move |f: &Failed<'_>| {
            refused(f);
            if let Ok(mut l) = seen.lock() {
                *l = Some((f.reason.to_string(), f.fix.is_some()));
            }
        };
        self.tasks.spawn(async move {
            let ok = retry("put metric data", Some(3), &cancel, on_failure, || {
                metrics.publish(&batch)
            })
            .await
            .is_some();
            if !flush && !cancel.is_cancelled() {
                let failed = if ok {
                    None
                } else {
                    last.lock().ok().and_then(|mut l| l.take())
                };
                let permanent = failed.as_ref().is_some_and(|(_, p)| *p);
                let _ = done.send(Completion::MetricsPublished {
                    failed: failed
                        .map(|(e, _)| e)
                        .or_else(|| (!ok).then(|| "no attempt ended".to_string())),
                    permanent,
                });
            }
            if ok {
                info!(
                    event = "metrics_published",
                    flush,
                    packets = batch.inbound_packets,
                    idle_seconds = batch.idle_seconds,
                    "Metrics published."
                );
            }
            if flush {
                let _ = done.send(Completion::MetricsFlushed);
            }
        });
    }

    /// Completes the termination lifecycle action (CONTINUE), retried until it holds.
    fn complete_lifecycle(&mut self) {
        let dry = self.options.dry_run;
        let Some(cap) = self.capacity.clone().filter(|_| !dry) else {
            info!(
                event = "lifecycle_completed",
                dry_run = dry,
                "Would complete the lifecycle action."
            );
            self.report(Completion::LifecycleCompleted);
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        let what = "complete the termination lifecycle action";
        let on_failure = stuck_after(&self.done, what, LIFECYCLE_STUCK_AFTER, |error| {
            Problem::LifecycleStuck { error }
        });
        self.tasks.spawn(async move {
            if retry(what, None, &cancel, on_failure, || cap.complete_lifecycle())
                .await
                .is_some()
            {
                info!(
                    event = "lifecycle_completed",
                    "Lifecycle action completed (CONTINUE)."
                );
                let _ = done.send(Completion::LifecycleCompleted);
            }
        });
    }

    /// Pulls the game's image before the instance goes into the warm pool.
    fn prepare_for_pool(&mut self) {
        let dry = self.options.dry_run;
        let image = self.config.container.image.clone();
        let (Some(containers), Some(image)) = (self.containers.clone().filter(|_| !dry), image)
        else {
            info!(
                event = "prepared",
                dry_run = dry,
                "Would prepare the instance for the warm pool."
            );
            self.report(Completion::Prepared);
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            info!(image = %image, "Preparing the instance for the warm pool.");
            // An image that cannot be pulled now is pulled at the next start instead;
            // the instance still goes into the pool (bounded attempts, 10 min each).
            match retry_within(
                "pull the game's image",
                PULL_TIMEOUT,
                Some(PULL_ATTEMPTS),
                &cancel,
                |_| {},
                || containers.prepare_image(&image),
            )
            .await
            {
                Some(pulled) => info!(
                    event = "prepared",
                    image = %image,
                    pulled,
                    "{}",
                    if pulled {
                        "Image pulled; the instance is ready for the warm pool."
                    } else {
                        "Image already present; the instance is ready for the warm pool."
                    }
                ),
                None => warn!(
                    event = "prepared",
                    image = %image,
                    pulled = false,
                    "Could not pull the image; it will be pulled when the instance starts."
                ),
            }
            let _ = done.send(Completion::Prepared);
        });
    }

    /// No container of the game ran within `start_within`: asks the Docker API why, the way
    /// the ECS agent met it (the pull of the game's image, which it also needs). ECS's own
    /// stopped reason is not used: the agent's introspection API carries none, and
    /// DescribeTasks would need a new IAM right (docs/notifications.md, `never_started`).
    fn diagnose_start(&mut self, waited: Duration) {
        let image = self.config.container.image.clone();
        let waited_s = waited.as_secs();
        info!(
            event = "start_check",
            waited_s,
            image = image.as_deref().unwrap_or(""),
            "No container of the game has run since the instance went into service; asking Docker why."
        );
        let Some(containers) = self.containers.clone() else {
            self.report(Completion::StartDiagnosed {
                why: "the agent does not watch a container".into(),
                known: false,
            });
            return;
        };
        let Some(image) = image else {
            self.report(Completion::StartDiagnosed {
                why: "nothing ran the game's container; the ECS agent's log on the instance (/var/log/ecs/ecs-agent.log) says why (set [container] image to have the agent check the image)".into(),
                known: true,
            });
            return;
        };
        if self.options.dry_run {
            self.report(Completion::StartDiagnosed {
                why: format!("dry run: the image {image} was not checked"),
                known: true,
            });
            return;
        }
        let done = self.done.clone();
        self.tasks.spawn(async move {
            let (why, known) = start_diagnosis(&image, timeout(DIAGNOSE_TIMEOUT, containers.prepare_image(&image)).await);
            if known {
                warn!(event = "start_diagnosed", image = %image, why = %why, "The game never started.");
            } else {
                info!(event = "start_diagnosed", image = %image, why = %why, known = false,
                    "Cannot tell why the game has not started; it is not stopped for it.");
            }
            let _ = done.send(Completion::StartDiagnosed { why, known });
        });
    }

    /// Completes the launching hook (CONTINUE), retried until it holds.
    fn complete_launch(&mut self) {
        let dry = self.options.dry_run;
        let Some(cap) = self.capacity.clone().filter(|_| !dry) else {
            info!(
                event = "launch_completed",
                dry_run = dry,
                "Would complete the launching hook."
            );
            self.report(Completion::LaunchCompleted);
            return;
        };
        let (done, cancel) = (self.done.clone(), self.cancel.clone());
        let what = "complete the launching hook";
        let on_failure = refused_once(&self.done, what);
        self.tasks.spawn(async move {
            if retry(what, None, &cancel, on_failure, || cap.complete_launch())
                .await
                .is_some()
            {
                info!(
                    event = "launch_completed",
                    "Launching hook completed (CONTINUE)."
                );
                let _ = done.send(Completion::LaunchCompleted);
            }
        });
    }
}

/// Keeps the lifecycle action alive while the game saves: a heartbeat every `every`, until the
/// stop ends (never, without a lifecycle hook to keep alive).
/// A note the agent keeps on its group (the wake ledger, the last stop, the game being up): a
/// few attempts, because a missing note costs an explanation or one more wake, nothing else.
async fn on_group<T, Fut>(
    what: &'static str,
    done: &mpsc::UnboundedSender<Completion>,
    cancel: &CancellationToken,
    call: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Result<T, crate::aws::AwsError>>,
{
    retry(
        what,
        Some(LEDGER_ATTEMPTS),
        cancel,
        refused_once(done, what),
        call,
    )
    .await
}

/// Seconds since the Unix epoch (0 on a clock before 1970).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the Docker API's answer says about a game that never ran: the reason, and whether it
/// is known (a pull error, or an image that is there and that nothing ran) or not (Docker not
/// answering, a pull still going or that just worked: the game may yet start).
fn start_diagnosis(
    image: &str,
    pulled: Result<Result<bool, ContainerError>, tokio::time::error::Elapsed>,
) -> (String, bool) {
    match pulled {
        Ok(Err(ContainerError::Docker {
            call: "pull image",
            reason,
        })) => (
            format!("the image {image} cannot be pulled: {reason}"),
            true,
        ),
        Ok(Ok(false)) => (
            format!(
                "the image {image} is on the instance, but nothing ran it; the ECS agent's log on the instance (/var/log/ecs/ecs-agent.log) says why, for example a task that does not fit the instance"
            ),
            true,
        ),
        Ok(Ok(true)) => (
            format!(
                "the image {image} was missing and has just been pulled; the game may still start"
            ),
            false,
        ),
        Ok(Err(e)) => (format!("Docker could not be asked: {e}"), false),
        Err(_) => (
            format!(
                "pulling the image {image} took more than {}s; the game may still start",
                DIAGNOSE_TIMEOUT.as_secs()
            ),
            false,
        ),
    }
}

async fn heartbeats(cap: Option<Arc<dyn Capacity>>, every: Duration) {
    let Some(cap) = cap else {
        return std::future::pending::<()>().await;
    };
    loop {
        match timeout(CALL_TIMEOUT, cap.heartbeat()).await {
            Ok(Ok(())) => {
                info!(event = "lifecycle_heartbeat", "Lifecycle heartbeat sent.")
            }
            Ok(Err(e)) => warn!(error = %e, "Lifecycle heartbeat failed."),
            Err(_) => warn!("Lifecycle heartbeat timed out."),
        }
        sleep(every).await;
    }
}

/// Whether the world was saved: the game exited on its own and the pre-stop command, if any,
/// succeeded. `None` when no game was running; `Some(false)` when the stop itself failed.
fn saved(report: Option<&StopReport>) -> Option<bool> {
    match report {
        Some(r) if r.container.is_none() => None,
        Some(r) => {
            Some(r.exited_on_its_own && r.pre_stop.as_ref().is_none_or(|p| p.exit_code == Some(0)))
        }
        None => Some(false),
    }
}

/// The one journal line that says how the stop went.
fn log_stopped(report: Option<&StopReport>) {
    match report {
        Some(r) => {
            let saved = r.pre_stop.as_ref().map(|p| p.exit_code == Some(0));
            info!(
                event = "graceful_stop_done",
                container = r.container.as_deref().unwrap_or("none"),
                pre_stop_exit = r.pre_stop.as_ref().and_then(|p| p.exit_code),
                pre_stop_timed_out = r.pre_stop.as_ref().is_some_and(|p| p.timed_out),
                pre_stop_output = r.pre_stop.as_ref().map_or("", |p| p.output.as_str()),
                saved,
                exited_on_its_own = r.exited_on_its_own,
                exit_code = r.exit_code,
                duration_ms = u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
                "Game stopped{}.",
                if r.exited_on_its_own {
                    ""
                } else {
                    " (it had to be killed)"
                }
            );
        }
        None => error!(
            event = "graceful_stop_done",
            saved = false,
            "The game could not be stopped gracefully."
        ),
    }
}

/// Heartbeats during a slow save: often enough for any hook timeout of 30 s or more.
pub fn heartbeat_every(stop_timeout: Duration) -> Duration {
    (stop_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn elapsed() -> tokio::time::error::Elapsed {
        match timeout(Duration::ZERO, std::future::pending::<()>()).await {
            Err(e) => e,
            Ok(()) => unreachable!("a pending future never finishes"),
        }
    }

    #[tokio::test]
    async fn only_a_pull_error_or_an_image_nothing_ran_is_a_known_reason() {
        let image = "example/game:1";
        let pull = |reason: &str| {
            Ok(Err(ContainerError::Docker {
                call: "pull image",
                reason: reason.into(),
            }))
        };
        let (why, known) = start_diagnosis(image, pull("manifest unknown"));
        assert!(
            known && why == "the image example/game:1 cannot be pulled: manifest unknown",
            "{why}"
        );
        let (why, known) = start_diagnosis(image, Ok(Ok(false)));
        assert!(
            known && why.contains("is on the instance, but nothing ran it"),
            "{why}"
        );
        for (answer, says) in [
            (Ok(Ok(true)), "has just been pulled"),
            (
                Ok(Err(ContainerError::Docker {
                    call: "inspect image",
                    reason: "connection refused".into(),
                })),
                "Docker could not be asked",
            ),
            (Err(elapsed().await), "took more than 120s"),
        ] {
            let (why, known) = start_diagnosis(image, answer);
            assert!(!known && why.contains(says), "{why}");
        }
    }
}
