//! The wiring: sources feed the decision core, and the core's actions run through the
//! adapters.
//!
//! Every task is owned and joined. Sources (the sampler, the container watcher, the metadata
//! poller) stop on one cancellation token. Actions run as tasks that retry with capped
//! exponential backoff until they succeed or the agent is forced to stop. SIGTERM or SIGINT
//! lead to a bounded drain; a second signal ends it at once.
//!
//! - [`run`] (this file): start, the loop, the drain.
//! - `adapters`: what the loop is given ([`Adapters`], [`Host`]) and the [`policy`] and
//!   notification sinks that follow from it.
//! - `options`: [`RunOptions`], [`Shutdown`], [`RunError`] and the [`drain_budget`].
//! - `sources`: the tasks that observe the world and feed the core.
//! - `executor`: one method per action of the core, run as owned tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::decide::{Alert, Completion, ContainerEvent, Core, Input, Policy};
use crate::{logship, notify};

mod adapters;
mod executor;
mod options;
mod sources;

pub use crate::retry::{CALL_TIMEOUT, backoff, retry, retry_within};
pub use adapters::{Adapters, Host, LinuxHost, policy};
use executor::Executor;
pub use executor::{LIFECYCLE_STUCK_AFTER, STUCK_AFTER, heartbeat_every};
pub use options::{RunError, RunOptions, Shutdown, drain_budget};
use sources::Inputs;
pub use sources::METADATA_POLL;

/// At the agent's end, queued notifications get at most this long to go out.
pub const NOTIFY_FLUSH: Duration = Duration::from_secs(15);

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
    log_start(&config, &adapters, &policy, &options);

    let sources = CancellationToken::new();
    let mut tasks = JoinSet::new();
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
        decision_log,
        problems,
        addresses,
        host,
    } = adapters;
    let shipper = match (decision_log, config.decision_log.as_ref()) {
        (Some(log), Some(d)) if !options.dry_run => {
            Some(logship::start(&logship::KEPT, log, d.interval))
        }
        _ => {
            logship::KEPT.discard();
            None
        }
    };

    if let Some(cap) = capacity.as_ref().filter(|_| !options.dry_run) {
        online_once_per_boot(&mut core, cap.as_ref(), host.uptime()).await;
    }
    let sinks = adapters::sinks(&config, alerts, secrets, http);
    let (notifier, notifications) =
        notify::start(sinks, notify_options(&config, &options, addresses));
    for problem in problems {
        notifier.notify(Alert::NeedsOperator(problem));
    }
    let mut inputs = sources::spawn(
        &mut tasks,
        &config,
        counter,
        probe,
        containers.clone(),
        metadata,
        &sources,
    )
    .await;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let mut exec = Executor {
        options: options.clone(),
        config: Arc::new(config.clone()),
        containers,
        dns,
        capacity,
        metrics,
        notifier,
        done: done_tx,
        cancel: CancellationToken::new(),
        tasks: JoinSet::new(),
    };
    let (result, deadline) = drive(
        &mut core,
        &mut exec,
        &mut inputs,
        &mut done_rx,
        &shutdown,
        host.as_ref(),
        &config,
    )
    .await;
    drain(exec, notifications, sources, tasks, deadline, &shutdown).await;
    match &result {
        Ok(()) => info!(event = "agent_stopped", "Agent stopped."),
        Err(e) => {
            warn!(event = "agent_stopped", error = %e, "Agent stopped before the drain finished.")
        }
    }
    if let Some(shipper) = shipper {
        // The last lines (the stop and its reason) go out within what is left of the drain,
        // and at least a few seconds: the instance is about to go, and the lines with it.
        let left = deadline.map_or(LAST_LINES, |d| {
            d.saturating_duration_since(Instant::now()).max(LAST_LINES)
        });
        shipper.finish(left.min(NOTIFY_FLUSH)).await;
    }
    result
}

/// At the agent's end, the last decision lines get at least this long to go out.
pub const LAST_LINES: Duration = Duration::from_secs(5);

fn log_start(config: &Config, adapters: &Adapters, policy: &Policy, options: &RunOptions) {
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
}

/// What every notification says about this server, and how they go out.
fn notify_options(
    config: &Config,
    options: &RunOptions,
    addresses: Vec<String>,
) -> notify::Options {
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
    }
}

/// How long a starting agent waits to learn whether the game was announced in this boot.
const ONLINE_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A restarted agent on a running instance: if the game was recorded up on the group since
/// this instance booted, players were told already, and are not told again. Not knowing (the
/// read fails or is slow) tells them again rather than never.
async fn online_once_per_boot(core: &mut Core, cap: &dyn crate::aws::Capacity, uptime: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let booted = now.saturating_sub(uptime.as_secs());
    match tokio::time::timeout(ONLINE_READ_TIMEOUT, cap.online_at()).await {
        // A second of slack: the clock of the record and /proc/uptime round differently.
        Ok(Ok(Some(at))) if at + 1 >= booted => {
            info!(
                event = "online_already_told",
                online_at = at,
                booted_at = booted,
                "The game was announced online in this boot already; not again."
            );
            core.online_already_told();
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "Cannot read whether the game was announced in this boot; it will be announced.")
        }
        Err(_) => {
            warn!("No answer on whether the game was announced in this boot; it will be announced.")
        }
    }
}

/// The loop: waits for the next input (a signal, a completion, a container event, a sample or
/// the core's wake-up), hands it to the core and dispatches the actions it returns, until the
/// core has finished or the drain runs out. Returns how it ended, and the drain's deadline
/// once a signal set one.
async fn drive(
    core: &mut Core,
    exec: &mut Executor,
    inputs: &mut Inputs,
    done_rx: &mut mpsc::UnboundedReceiver<Completion>,
    shutdown: &Shutdown,
    host: &dyn Host,
    config: &Config,
) -> (Result<(), RunError>, Option<Instant>) {
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
                    let system_stopping = host.system_stopping().await;
                    info!(system_stopping, "Stop signal received; draining.");
                    deadline = Some(Instant::now() + drain_budget(config));
                    Some(Input::Shutdown { system_stopping })
                }
                () = async { match deadline { Some(d) => sleep_until(d).await, None => std::future::pending().await } } => {
                    result = Err(RunError::DrainTimeout(drain_budget(config)));
                    break;
                }
                Some(c) = done_rx.recv() => Some(Input::Done(c)),
                Some(ev) = inputs.container.recv() => Some(Input::Container(ev)),
                Some(i) = inputs.observations.recv() => Some(i),
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
        log_input(&input, core, now);
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
    (result, deadline)
}

/// The end: stop the sources, then let running actions finish within what is left of the
/// budget, send what is queued, and join every task.
async fn drain(
    mut exec: Executor,
    notifications: notify::Running,
    sources: CancellationToken,
    mut tasks: JoinSet<()>,
    deadline: Option<Instant>,
    shutdown: &Shutdown,
) {
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
    exec.cancel.cancel();
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
