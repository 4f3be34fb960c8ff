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
use crate::aws::{Alerts, Capacity, DnsRecord, InstanceMetadata, Metrics, Secrets};
use crate::config::Config;
use crate::container::Containers;
use crate::decide::{
    Alert, Completion, ContainerEvent, Core, Input, LifecycleState, Observation, PacketReading,
    Policy, ProbeReading, Problem, Readiness,
};
use crate::notify::{self, Sink};

mod executor;

pub use crate::retry::{CALL_TIMEOUT, backoff, retry, retry_within};
use executor::Executor;
pub use executor::{LIFECYCLE_STUCK_AFTER, STUCK_AFTER, heartbeat_every};

/// How often IMDS is polled for the lifecycle state and Spot notices.
pub const METADATA_POLL: Duration = Duration::from_secs(5);

/// At the agent's end, queued notifications get at most this long to go out.
pub const NOTIFY_FLUSH: Duration = Duration::from_secs(15);

/// The notification sinks the config asks for and the adapters allow.
fn sinks(
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
    /// Where webhook URLs are read; `None` without webhook targets.
    pub secrets: Option<Arc<dyn Secrets>>,
    /// How webhooks are posted; `None` when the HTTPS client could not be built.
    pub http: Option<Arc<dyn notify::http::HttpPost>>,
    /// What went wrong at boot that an operator must fix (told once the notifier runs).
    pub problems: Vec<Problem>,
    /// The addresses players connect to, for the `online` message.
    pub addresses: Vec<String>,
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
        ready_when: if adapters.probe.is_some() {
            Readiness::ProbeAnswers
        } else if adapters.containers.is_some() {
            Readiness::ContainerRuns
        } else {
            Readiness::InService
        },
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
        webhooks = config.notify.webhooks.len(),
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
        secrets,
        http,
        problems,
        addresses,
        host,
    } = adapters;

    let sinks = sinks(&config, alerts, secrets, http);
    let (notifier, notifications) = notify::start(
        sinks,
        notify::Options {
            context: notify::Context {
                server: config.dns.as_ref().map_or_else(
                    || config.container.selector.to_string(),
                    |d| d.record_name.clone(),
                ),
                addresses,
            },
            players_every: config.notify.players_every,
            delivery: notify::Delivery::default(),
            dry_run: options.dry_run,
        },
    );
    for problem in problems {
        notifier.notify(Alert::NeedsOperator(problem));
    }

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
        notifier,
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
    drop(exec);
    // What is queued still goes out, within what is left of the budget (at most 15 s).
    let left = deadline.map_or(NOTIFY_FLUSH, |d| {
        d.saturating_duration_since(Instant::now())
            .min(NOTIFY_FLUSH)
    });
    notifications.finish(left).await;
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
