//! The wiring: sources feed the decision core, and the core's actions run through the
//! adapters.
//!
//! Every task is owned and joined. Sources (the sampler, the container watcher, the metadata
//! poller) stop on one cancellation token. Actions run as tasks that retry with capped
//! exponential backoff until they succeed or the agent is forced to stop. SIGTERM or SIGINT
//! lead to a bounded drain; a second signal ends it at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::activity::{PacketCounter, Probe};
use crate::aws::{
    AlertMessage, Alerts, Capacity, DnsRecord, InstanceMetadata, Metrics, RevertOutcome,
};
use crate::config::Config;
use crate::container::Containers;
use crate::decide::{
    Action, Alert, Completion, ContainerEvent, Core, Input, LifecycleState, Observation,
    PacketReading, Policy, ProbeReading,
};

/// How often IMDS is polled for the lifecycle state and Spot notices.
pub const METADATA_POLL: Duration = Duration::from_secs(5);

/// Each attempt of an AWS or Docker call is bounded by this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// After this many failed attempts of CompleteLifecycleAction an alert goes out (it is still
/// retried).
pub const LIFECYCLE_STUCK_AFTER: u32 = 3;
/// A pull of the game's image while preparing for the warm pool: bound per attempt, attempts.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const PULL_ATTEMPTS: u32 = 3;

/// The host the agent runs on.
pub trait Host: Send + Sync + fmt::Debug {
    /// How long the instance has been up.
    fn uptime(&self) -> Duration;
    /// Whether the whole system is shutting down (rather than just the agent stopping).
    fn system_stopping(&self) -> bool;
}

/// The real host: `/proc/uptime` and `systemctl is-system-running`.
#[derive(Debug, Default)]
pub struct LinuxHost;

impl Host for LinuxHost {
    fn uptime(&self) -> Duration {
        std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::ZERO)
    }

    fn system_stopping(&self) -> bool {
        std::process::Command::new("systemctl")
            .arg("is-system-running")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "stopping")
            .unwrap_or(false)
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
    pub host: Arc<dyn Host>,
}

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

/// The policy for the core, from the config and the adapters that exist.
pub fn policy(config: &Config, adapters: &Adapters) -> Policy {
    let scaling = config.scaling.as_ref();
    Policy {
        min_packets_per_second: config.activity.min_packets_per_second,
        sample_interval: config.activity.sample_interval,
        idle_after: config.activity.idle_after,
        boot_grace: config.activity.boot_grace,
        crashes_before_shutdown: config.container.crashes_before_shutdown,
        max_uptime: scaling.map(|s| s.max_uptime),
        stop_on_max_uptime: scaling.is_some_and(|s| s.stop_on_max_uptime),
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
    }
}

/// How long the drain after a signal may take: the game's stop, plus time for DNS, metrics
/// and the lifecycle action. The systemd unit's `TimeoutStopSec` is set above this.
pub fn drain_budget(config: &Config) -> Duration {
    config.container.stop_timeout + Duration::from_secs(90)
}

/// Runs the agent until the core finishes (termination handled) or a signal's drain ends.
pub async fn run(
    config: Config,
    adapters: Adapters,
    options: RunOptions,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let policy = policy(&config, &adapters);
    let now = Instant::now();
    let mut core = Core::new(policy.clone(), now, adapters.host.uptime());
    info!(
        event = "agent_started",
        config = %config.source,
        dry_run = options.dry_run,
        ports = %config.activity.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        dns = policy.dns,
        scaling = policy.scaling,
        metrics = policy.metrics_interval.is_some(),
        alerts = adapters.alerts.is_some(),
        probe = adapters.probe.is_some(),
        "Agent started."
    );

    let sources = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (input_tx, mut input_rx) = mpsc::channel::<Input>(64);
    let (container_tx, mut container_rx) = mpsc::channel::<ContainerEvent>(64);

    let Adapters {
        counter,
        probe,
        containers,
        metadata,
        dns,
        capacity,
        metrics,
        alerts,
        host,
    } = adapters;

    tasks.spawn(sampler(
        counter,
        probe,
        config.clone(),
        input_tx.clone(),
        sources.clone(),
    ));
    if let Some(c) = containers.clone() {
        let cancel = sources.clone();
        tasks.spawn(async move { c.watch(container_tx, cancel).await });
    } else {
        drop(container_tx);
    }
    match metadata {
        Some(m) => {
            tasks.spawn(metadata_poller(m, input_tx.clone(), sources.clone()));
        }
        None => {
            // No metadata service: behave as a host outside any group.
            let _ = input_tx
                .send(Input::Lifecycle(LifecycleState::Standalone))
                .await;
        }
    }
    drop(input_tx);

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let actions_cancel = CancellationToken::new();
    let mut exec = Executor {
        options: options.clone(),
        config: Arc::new(config.clone()),
        containers,
        dns,
        capacity,
        metrics,
        alerts,
        done: done_tx,
        cancel: actions_cancel.clone(),
        tasks: JoinSet::new(),
    };

    let mut deadline: Option<Instant> = None;
    let mut signalled = false;
    let mut result = Ok(());
    loop {
        let input = {
            let wake = core.next_wake();
            tokio::select! {
                biased;
                () = shutdown.force.cancelled() => {
                    result = Err(RunError::Forced);
                    break;
                }
                () = shutdown.graceful.cancelled(), if !signalled => {
                    signalled = true;
                    let system_stopping = host.system_stopping();
                    info!(system_stopping, "Stop signal received; draining.");
                    deadline = Some(Instant::now() + drain_budget(&config));
                    Some(Input::Shutdown { system_stopping })
                }
                () = async { match deadline { Some(d) => sleep_until(d).await, None => std::future::pending().await } } => {
                    result = Err(RunError::DrainTimeout(drain_budget(&config)));
                    break;
                }
                Some(c) = done_rx.recv() => Some(Input::Done(c)),
                Some(ev) = container_rx.recv() => Some(Input::Container(ev)),
                Some(i) = input_rx.recv() => Some(i),
                () = async { match wake { Some(w) => sleep_until(w).await, None => std::future::pending().await } } => Some(Input::Tick),
                Some(joined) = exec.tasks.join_next() => {
                    if let Err(e) = joined && e.is_panic() {
                        error!(error = %e, "An action task panicked.");
                    }
                    None
                }
            }
        };
        let Some(input) = input else { continue };
        let now = Instant::now();
        log_input(&input, &core, now);
        let out = core.handle(input, now);
        if let Some(v) = &out.verdict {
            log_verdict(v);
        }
        for action in out.actions {
            exec.dispatch(action);
        }
        if core.finished() {
            break;
        }
    }

    // Stop the sources, then let running actions finish within what is left of the budget.
    sources.cancel();
    let left = deadline.map_or(Duration::from_secs(30), |d| {
        d.saturating_duration_since(Instant::now())
    });
    let forced = shutdown.force.clone();
    let wait_actions = async { while exec.tasks.join_next().await.is_some() {} };
    tokio::select! {
        () = wait_actions => {}
        () = sleep(left) => warn!("Some actions were still running at the end of the drain."),
        () = forced.cancelled() => warn!("Second signal: abandoning running actions."),
    }
    actions_cancel.cancel();
    exec.tasks.shutdown().await;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            error!(error = %e, "A source task panicked.");
        }
    }
    match &result {
        Ok(()) => info!(event = "agent_stopped", "Agent stopped."),
        Err(e) => {
            warn!(event = "agent_stopped", error = %e, "Agent stopped before the drain finished.")
        }
    }
    result
}

fn log_input(input: &Input, core: &Core, now: Instant) {
    match input {
        Input::Container(ContainerEvent::Running { id, name }) => {
            info!(event = "container_running", id = %short(id), name = %name, "Game container is running.");
        }
        Input::Container(ContainerEvent::Exited {
            id,
            name,
            exit_code,
            requested,
            oom_killed,
            ..
        }) => {
            let crash = core.is_crash(*exit_code, *requested, *oom_killed);
            info!(
                event = "container_exited",
                id = %short(id),
                name = %name,
                exit_code,
                requested,
                oom_killed,
                crash,
                idle_for_s = core.idle_for(now).as_secs(),
                "Game container exited."
            );
        }
        Input::Lifecycle(state) => info!(state = ?state, "Lifecycle state."),
        Input::SpotInterruption => warn!(event = "spot_interruption", "Spot interruption notice."),
        _ => {}
    }
}

fn log_verdict(v: &crate::decide::Verdict) {
    if let Some(remaining) = v.remaining {
        info!(
            event = "idle_countdown",
            idle_for_s = v.idle_for.as_secs(),
            remaining_s = remaining.as_secs(),
            basis = v.basis,
            "Server is quiet."
        );
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Counts packets and probes the game every sample interval.
async fn sampler(
    mut counter: Result<Box<dyn PacketCounter>, String>,
    probe: Option<Arc<dyn Probe>>,
    config: Config,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    let every = config.activity.sample_interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let specs: Vec<String> = config
        .activity
        .ports
        .iter()
        .map(ToString::to_string)
        .collect();
    // Discard whatever arrived before the first interval began.
    if let Ok(c) = counter.as_mut() {
        let _ = c.take();
    }
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let interval = now.saturating_duration_since(last);
        last = now;
        let packets = match counter.as_mut() {
            Ok(c) => match c.take() {
                Ok(counts) => PacketReading::Known {
                    total: counts.iter().sum(),
                    by_port: specs.iter().cloned().zip(counts).collect(),
                },
                Err(e) => PacketReading::Unknown {
                    reason: e.to_string(),
                },
            },
            Err(reason) => PacketReading::Unknown {
                reason: reason.clone(),
            },
        };
        let probe_reading = match &probe {
            None => None,
            Some(p) => {
                let limit = config
                    .activity
                    .probe
                    .as_ref()
                    .map_or(Duration::from_secs(2), |p| p.timeout)
                    + Duration::from_millis(500);
                Some(match timeout(limit, p.players()).await {
                    Ok(Ok(c)) => ProbeReading::Players {
                        online: c.players,
                        max: c.max_players,
                    },
                    Ok(Err(e)) => ProbeReading::Failed {
                        error: e.to_string(),
                    },
                    Err(_) => ProbeReading::Failed {
                        error: format!("no answer within {limit:?}"),
                    },
                })
            }
        };
        let keep_awake = tokio::fs::try_exists(&config.activity.keep_awake_file)
            .await
            .ok();
        log_sample(&packets, probe_reading.as_ref(), keep_awake, interval);
        let obs = Observation {
            interval,
            packets,
            probe: probe_reading,
            keep_awake,
        };
        if tx.send(Input::Observation(obs)).await.is_err() {
            return;
        }
    }
}

fn log_sample(
    packets: &PacketReading,
    probe: Option<&ProbeReading>,
    keep_awake: Option<bool>,
    interval: Duration,
) {
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let players = match probe {
        Some(ProbeReading::Players { online, .. }) => Some(*online),
        _ => None,
    };
    let probe_error = match probe {
        Some(ProbeReading::Failed { error }) => Some(error.as_str()),
        _ => None,
    };
    match packets {
        PacketReading::Known { total, by_port } => {
            let by_port = by_port
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            info!(event = "sample", packets = total, by_port = %by_port, players, probe_error, keep_awake, interval_ms, "Sample.");
        }
        PacketReading::Unknown { reason } => {
            warn!(event = "sample", packets_unknown = %reason, players, probe_error, keep_awake, interval_ms, "Sample; packets could not be counted.");
        }
    }
}

/// Polls IMDS for the lifecycle state and Spot notices. Errors are logged and skipped: an
/// unknown state changes nothing.
async fn metadata_poller(
    metadata: Arc<dyn InstanceMetadata>,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    let mut last: Option<LifecycleState> = None;
    let mut spot_sent = false;
    let mut ticker = tokio::time::interval(METADATA_POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match timeout(CALL_TIMEOUT, metadata.lifecycle_state()).await {
            Ok(Ok(state)) => {
                failures = 0;
                if last.as_ref() != Some(&state) {
                    last = Some(state.clone());
                    if tx.send(Input::Lifecycle(state)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(error = %e, failures, "Cannot read the lifecycle state; keeping the last known one.");
                }
            }
            Err(_) => warn!("Reading the lifecycle state timed out."),
        }
        if !spot_sent
            && let Ok(Ok(true)) = timeout(CALL_TIMEOUT, metadata.spot_interruption()).await
        {
            spot_sent = true;
            if tx.send(Input::SpotInterruption).await.is_err() {
                return;
            }
        }
    }
}

/// Runs the core's actions as owned tasks and reports completions back.
#[derive(Debug)]
struct Executor {
    options: RunOptions,
    config: Arc<Config>,
    containers: Option<Arc<dyn Containers>>,
    dns: Option<Arc<dyn DnsRecord>>,
    capacity: Option<Arc<dyn Capacity>>,
    metrics: Option<Arc<dyn Metrics>>,
    alerts: Option<Arc<dyn Alerts>>,
    done: mpsc::UnboundedSender<Completion>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.min(10));
    Duration::from_millis(ms.min(30_000))
}

/// Retries `call` until it succeeds, `max_attempts` is reached, or `cancel` fires.
/// `on_failure` sees each failure with its attempt number (1-based). Each attempt is bounded
/// by [`CALL_TIMEOUT`].
pub async fn retry<T, E, F, Fut>(
    what: &str,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    on_failure: impl FnMut(u32, &str),
    call: F,
) -> Option<T>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_within(what, CALL_TIMEOUT, max_attempts, cancel, on_failure, call).await
}

/// [`retry`] with another bound per attempt, for calls that legitimately take long (the
/// graceful stop waits for the game to save and exit).
pub async fn retry_within<T, E, F, Fut>(
    what: &str,
    per_attempt: Duration,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    mut on_failure: impl FnMut(u32, &str),
    mut call: F,
) -> Option<T>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return None,
            r = timeout(per_attempt, call()) => r,
        };
        let reason = match outcome {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {per_attempt:?}"),
        };
        attempt += 1;
        on_failure(attempt, &reason);
        let wait = backoff(attempt - 1);
        warn!(what, attempt, error = %reason, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Call failed; retrying.");
        if max_attempts.is_some_and(|m| attempt >= m) {
            error!(what, attempt, error = %reason, "Giving up.");
            return None;
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = sleep(wait) => {}
        }
    }
}

impl Executor {
    fn report(&self, c: Completion) {
        // The loop may already have ended; then nobody needs the completion.
        let _ = self.done.send(c);
    }

    fn dispatch(&mut self, action: Action) {
        let dry = self.options.dry_run;
        match action {
            Action::Exit => {}
            Action::UpdateDns => {
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
                self.tasks.spawn(async move {
                    if let Some(ip) = retry("route53 upsert", None, &cancel, |_, _| {}, || dns.point_here()).await {
                        info!(event = "dns_updated", record = %record, ip = %ip, "Record points at this instance.");
                        let _ = done.send(Completion::DnsUpdated);
                    }
                });
            }
            Action::ScaleToZero(reason) => {
                info!(event = "scale_in_requested", reason = reason.kind(), detail = %reason, dry_run = dry, "Scaling to zero: {reason}.");
                let Some(cap) = self.capacity.clone() else {
                    return;
                };
                if dry {
                    self.report(Completion::ScaledIn);
                    return;
                }
                let (done, cancel) = (self.done.clone(), self.cancel.clone());
                self.tasks.spawn(async move {
                    if retry(
                        "set desired capacity 0",
                        None,
                        &cancel,
                        |_, _| {},
                        || cap.scale_to_zero(),
                    )
                    .await
                    .is_some()
                    {
                        info!(event = "scale_in_done", "Desired capacity set to 0.");
                        let _ = done.send(Completion::ScaledIn);
                    }
                });
            }
            Action::Alert(alert) => {
                let message = alert_message(&alert, &self.config);
                let kind = alert_kind(&alert);
                let Some(alerts) = self.alerts.clone() else {
                    info!(alert = kind, subject = %message.subject, "No alert topic configured; alert only logged.");
                    return;
                };
                if dry {
                    info!(event = "alert_sent", dry_run = true, alert = kind, subject = %message.subject, "Would send alert.");
                    return;
                }
                let cancel = self.cancel.clone();
                self.tasks.spawn(async move {
                    if retry("sns publish", None, &cancel, |_, _| {}, || alerts.send(&message)).await.is_some() {
                        info!(event = "alert_sent", alert = kind, subject = %message.subject, "Alert sent.");
                    }
                });
            }
            Action::GracefulStop { cause, heartbeat } => {
                info!(cause = %cause, dry_run = dry, "Stopping the game gracefully because {cause}.");
                let Some(containers) = self.containers.clone().filter(|_| !dry) else {
                    info!(
                        event = "graceful_stop_done",
                        dry_run = dry,
                        saved = false,
                        "No container stop performed."
                    );
                    self.report(Completion::GracefulStopDone);
                    return;
                };
                let cap = self.capacity.clone().filter(|_| heartbeat);
                let stop_timeout = self.config.container.stop_timeout;
                let every = heartbeat_every(stop_timeout);
                let (done, cancel) = (self.done.clone(), self.cancel.clone());
                self.tasks.spawn(async move {
                    let beats = async {
                        let Some(cap) = cap else {
                            return std::future::pending::<()>().await;
                        };
                        loop {
                            match timeout(CALL_TIMEOUT, cap.heartbeat()).await {
                                Ok(Ok(())) => info!(
                                    event = "lifecycle_heartbeat",
                                    "Lifecycle heartbeat sent."
                                ),
                                Ok(Err(e)) => warn!(error = %e, "Lifecycle heartbeat failed."),
                                Err(_) => warn!("Lifecycle heartbeat timed out."),
                            }
                            sleep(every).await;
                        }
                    };
                    // The stop waits for the pre-stop command and the game's exit: bounded by
                    // them, not by CALL_TIMEOUT.
                    let bound = crate::container::graceful_stop_bound(stop_timeout);
                    let stop = retry_within(
                        "graceful stop",
                        bound,
                        Some(3),
                        &cancel,
                        |_, _| {},
                        || containers.graceful_stop(),
                    );
                    let report = tokio::select! {
                        r = stop => r,
                        () = beats => None,
                    };
                    match report {
                        Some(r) => {
                            let saved = r.pre_stop.as_ref().map(|p| p.exit_code == Some(0));
                            info!(
                                event = "graceful_stop_done",
                                container = r.container.as_deref().unwrap_or("none"),
                                pre_stop_exit = r.pre_stop.as_ref().and_then(|p| p.exit_code),
                                pre_stop_timed_out =
                                    r.pre_stop.as_ref().is_some_and(|p| p.timed_out),
                                pre_stop_output =
                                    r.pre_stop.as_ref().map_or("", |p| p.output.as_str()),
                                saved,
                                exited_on_its_own = r.exited_on_its_own,
                                exit_code = r.exit_code,
                                duration_ms =
                                    u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
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
                    let _ = done.send(Completion::GracefulStopDone);
                });
            }
            Action::RevertDns => {
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
                self.tasks.spawn(async move {
                    match retry("route53 revert", None, &cancel, |_, _| {}, || dns.revert()).await {
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
            Action::PublishMetrics { batch, flush } => {
                let Some(metrics) = self.metrics.clone().filter(|_| !dry) else {
                    if flush {
                        self.report(Completion::MetricsFlushed);
                    }
                    return;
                };
                let (done, cancel) = (self.done.clone(), self.cancel.clone());
                self.tasks.spawn(async move {
                    let ok = retry(
                        "put metric data",
                        Some(3),
                        &cancel,
                        |_, _| {},
                        || metrics.publish(&batch),
                    )
                    .await
                    .is_some();
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
            Action::CompleteLifecycle => {
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
                self.tasks.spawn(async move {
                    let stuck_tx = done.clone();
                    let on_failure = move |attempt: u32, reason: &str| {
                        if attempt == LIFECYCLE_STUCK_AFTER {
                            let _ = stuck_tx.send(Completion::LifecycleStuck {
                                error: reason.to_string(),
                            });
                        }
                    };
                    if retry(
                        "complete lifecycle action",
                        None,
                        &cancel,
                        on_failure,
                        || cap.complete_lifecycle(),
                    )
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
            Action::PrepareForPool => {
                let image = self.config.container.image.clone();
                let (Some(containers), Some(image)) =
                    (self.containers.clone().filter(|_| !dry), image)
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
                        |_, _| {},
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
            Action::CompleteLaunch => {
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
                self.tasks.spawn(async move {
                    if retry(
                        "complete the launching hook",
                        None,
                        &cancel,
                        |_, _| {},
                        || cap.complete_launch(),
                    )
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
    }
}

/// Heartbeats during a slow save: often enough for any hook timeout of 30 s or more.
pub fn heartbeat_every(stop_timeout: Duration) -> Duration {
    (stop_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

fn alert_kind(alert: &Alert) -> &'static str {
    match alert {
        Alert::Crash { .. } => "crash",
        Alert::IdleShutdown { .. } => "idle",
        Alert::MaxUptime { .. } => "max_uptime",
        Alert::LifecycleStuck { .. } => "lifecycle_stuck",
    }
}

fn mins(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The text of an alert: a subject short enough for a phone's notification, and a body a
/// person reads without knowing the agent's internals.
pub fn alert_message(alert: &Alert, config: &Config) -> AlertMessage {
    let server = config.dns.as_ref().map_or_else(
        || config.container.selector.to_string(),
        |d| d.record_name.clone(),
    );
    match alert {
        Alert::Crash {
            exit_code,
            oom_killed,
            crashes,
            container,
            log_tail,
            scaling_in,
        } => {
            let what = if *oom_killed {
                format!("was killed for lack of memory (exit code {exit_code})")
            } else {
                format!("crashed with exit code {exit_code}")
            };
            let mut body = format!("The game server {server} {what}.\n");
            if *crashes > 1 {
                body.push_str(&format!("That is {crashes} crashes in a row.\n"));
            }
            body.push_str(if *scaling_in {
                "The instance is shutting down to save money. Look up the server's name again to start it.\n"
            } else {
                "The instance keeps running.\n"
            });
            body.push_str(&format!("\nContainer: {container}\n"));
            if !log_tail.is_empty() {
                body.push_str(&format!("\nLast {} log lines:\n", log_tail.len()));
                for l in log_tail {
                    body.push_str(l);
                    body.push('\n');
                }
            }
            AlertMessage {
                subject: truncate_subject(&format!("{server}: game crashed (exit {exit_code})")),
                body,
            }
        }
        Alert::IdleShutdown { idle_for, detail } => AlertMessage {
            subject: truncate_subject(&format!("{server}: idle, shutting down")),
            body: format!(
                "Nobody has played on {server} for {}.\nWhy: {detail}.\nThe world was saved before the server stopped. Look up the server's name to start it again.\n",
                mins(*idle_for)
            ),
        },
        Alert::MaxUptime { uptime, scaling_in } => AlertMessage {
            subject: truncate_subject(&format!("{server}: up for {}", mins(*uptime))),
            body: if *scaling_in {
                format!(
                    "{server} has been running for {}, its maximum. It is shutting down now (stop_on_max_uptime is on); the world is saved first.\n",
                    mins(*uptime)
                )
            } else {
                format!(
                    "{server} has been running for {}, longer than its max_uptime. It keeps running; check whether someone is playing or it is stuck.\n",
                    mins(*uptime)
                )
            },
        },
        Alert::LifecycleStuck { error } => AlertMessage {
            subject: truncate_subject(&format!("{server}: shutdown step failing")),
            body: format!(
                "The agent cannot complete the instance's termination lifecycle action: {error}\nIt keeps retrying. If it never succeeds, the instance terminates when the hook times out.\n"
            ),
        },
    }
}

/// SNS subjects are at most 100 characters.
fn truncate_subject(s: &str) -> String {
    s.chars().take(100).collect()
}
