//! The Docker adapter: a bollard client on the daemon's socket.
//!
//! The watcher runs sessions. Each session:
//! 1. negotiates the API version once (bollard's default is newer than dockerd 20.10's 1.41);
//! 2. after a reconnect, replays the events missed since the last one handled
//!    (`since`/`until`), so a stream break with dockerd alive loses nothing and classifies
//!    exactly; if the replay lacks that last event, dockerd restarted and its events are lost;
//! 3. reconciles with a listing (a crash while the stream was down is still seen);
//! 4. follows the live stream from the listing's time, so nothing between is missed.
//!
//! Breaks reconnect with capped exponential backoff that listens for cancellation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerSummary, EventMessage};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, StopContainerOptions,
};
use futures_util::{Stream, StreamExt};
use tokio::sync::{OnceCell, mpsc};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::classify::{self, Action, ECS_LABEL, Ev, Outcome, Snapshot, Tracker};
use super::traits::{ContainerError, Containers, PreStopReport, StopReport};
use crate::config::{ContainerConfig, ContainerSelector};
use crate::decide::ContainerEvent;

/// The default endpoint when `DOCKER_HOST` is not set.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Each short Docker call (list, inspect, logs, exec inspect) is bounded by this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an unrequested SIGKILL exit waits for Docker to report an OOM kill that came late.
const OOM_SETTLE: Duration = Duration::from_secs(2);
const OOM_POLL: Duration = Duration::from_millis(200);

/// The pre-stop command may run this long at most (and never longer than `stop_timeout`).
/// With the stop itself bounded by `stop_timeout`, a graceful stop fits in the run loop's
/// drain budget (`stop_timeout` + 90 s) with room left for DNS, metrics and the lifecycle
/// action.
pub const PRE_STOP_MAX: Duration = Duration::from_secs(60);

/// How much of the pre-stop command's output is kept (its end).
const PRE_STOP_OUTPUT_MAX: usize = 4096;

/// A stop-request `kill` counts for an exit at most this long after it (or `stop_timeout` plus
/// a minute, if longer).
const REQUEST_WINDOW_MIN: Duration = Duration::from_secs(600);

/// Reconnect backoff: 250 ms doubling to 5 s. The socket is local, so retrying often is cheap
/// and keeps the time without events short.
fn reconnect_backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << failures.min(8));
    Duration::from_millis(ms.min(5_000))
}

/// How long the pre-stop command may run for this `stop_timeout`.
pub fn pre_stop_timeout(stop_timeout: Duration) -> Duration {
    stop_timeout.min(PRE_STOP_MAX)
}

/// The longest a whole [`Containers::graceful_stop`] takes: the pre-stop command, the stop,
/// and some slack for the API calls around them.
pub fn graceful_stop_bound(stop_timeout: Duration) -> Duration {
    pre_stop_timeout(stop_timeout) + stop_timeout + Duration::from_secs(30)
}

/// What the watcher observed: the decision core's events, plus what only the diagnostic
/// command prints (OOM and health events).
pub type Observed = Outcome;

impl Outcome {
    /// The decision core's event, if this is one.
    pub fn container_event(&self) -> Option<ContainerEvent> {
        match self {
            Self::Running { id, name, .. } => Some(ContainerEvent::Running {
                id: id.clone(),
                name: name.clone(),
            }),
            Self::Exited(exit) => Some(ContainerEvent::Exited {
                id: exit.id.clone(),
                name: exit.name.clone(),
                exit_code: exit.exit_code,
                requested: exit.requested,
                oom_killed: exit.oom_killed,
                log_tail: exit.log_tail.clone(),
            }),
            Self::Oom { .. } | Self::Health { .. } => None,
        }
    }
}

/// The game container through a Docker daemon.
#[derive(Debug, Clone)]
pub struct DockerContainers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: String,
    config: ContainerConfig,
    base: Docker,
    negotiated: OnceCell<Docker>,
    /// Containers the agent is stopping, marked before the pre-stop command runs: the command
    /// itself may end the game, and that exit is requested too.
    stop_marks: Mutex<HashMap<String, Instant>>,
}

/// How a session ended.
enum SessionEnd {
    Cancelled,
    /// The consumer is gone.
    Closed,
    /// Connected, then the stream broke.
    Broken(String),
    /// Could not connect or set up.
    Failed(ContainerError),
}

fn docker_err(call: &'static str) -> impl Fn(BollardError) -> ContainerError {
    move |e| ContainerError::Docker {
        call,
        reason: e.to_string(),
    }
}

fn timed_out(call: &'static str, after: Duration) -> ContainerError {
    ContainerError::Docker {
        call,
        reason: format!("no answer within {after:?}"),
    }
}

/// Nanoseconds since the Unix epoch, the unit of Docker's `timeNano`.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Docker's RFC 3339 timestamps (`State.FinishedAt`); `None` for the zero time or garbage.
fn parse_docker_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok().filter(|n| *n > 0)
}

/// Docker's `since`/`until` format: seconds with a nanosecond fraction.
fn docker_ts(ns: i64) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// The first 12 characters of an id, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl DockerContainers {
    /// `DOCKER_HOST` if set, else `/var/run/docker.sock`.
    pub fn from_env(config: ContainerConfig) -> Result<Self, ContainerError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(&endpoint, config)
    }

    /// A client for `endpoint` (`unix:///path`, a bare socket path, `tcp://` or `http://`).
    /// Nothing is sent until the first call; the API version is negotiated then.
    pub fn new(endpoint: &str, config: ContainerConfig) -> Result<Self, ContainerError> {
        let endpoint = if endpoint.starts_with('/') {
            format!("unix://{endpoint}")
        } else {
            endpoint.to_string()
        };
        let base = Docker::connect_with_host(&endpoint).map_err(|e| ContainerError::Docker {
            call: "connect",
            reason: format!("{endpoint}: {e}"),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                config,
                base,
                negotiated: OnceCell::new(),
                stop_marks: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn selector(&self) -> &ContainerSelector {
        &self.inner.config.selector
    }

    /// The client with the negotiated API version (at most the daemon's).
    async fn client(&self) -> Result<Docker, ContainerError> {
        let inner = &self.inner;
        let docker = inner
            .negotiated
            .get_or_try_init(|| async {
                let d = timeout(CALL_TIMEOUT, inner.base.clone().negotiate_version())
                    .await
                    .map_err(|_| timed_out("version", CALL_TIMEOUT))?
                    .map_err(docker_err("version"))?;
                info!(endpoint = %inner.endpoint, api_version = %d.client_version(), "Connected to Docker.");
                Ok::<_, ContainerError>(d)
            })
            .await?;
        Ok(docker.clone())
    }

    /// Docker-side filters for the selector; results are still matched exactly here, because
    /// Docker's name filters match prefixes and substrings.
    fn filters(&self) -> HashMap<String, Vec<String>> {
        let mut f = HashMap::new();
        match self.selector() {
            ContainerSelector::EcsContainerName(n) => {
                f.insert("label".to_string(), vec![format!("{ECS_LABEL}={n}")]);
            }
            ContainerSelector::DockerName(n) => {
                f.insert("name".to_string(), vec![n.clone()]);
            }
        }
        f
    }

    fn event_filters(&self) -> HashMap<String, Vec<String>> {
        let mut f = self.filters();
        if let Some(names) = f.remove("name") {
            f.insert("container".to_string(), names);
        }
        f.insert("type".to_string(), vec!["container".to_string()]);
        f.insert(
            "event".to_string(),
            [
                "start",
                "kill",
                "oom",
                "die",
                "stop",
                "destroy",
                "health_status",
            ]
            .map(String::from)
            .to_vec(),
        );
        f
    }

    fn mark_stop(&self, id: &str) {
        if let Ok(mut marks) = self.inner.stop_marks.lock() {
            let keep =
                graceful_stop_bound(self.inner.config.stop_timeout) + Duration::from_secs(300);
            marks.retain(|_, at| at.elapsed() < keep);
            marks.insert(id.to_string(), Instant::now());
        }
    }

    fn is_marked(&self, id: &str) -> bool {
        self.inner
            .stop_marks
            .lock()
            .map(|m| m.contains_key(id))
            .unwrap_or(false)
    }

    fn request_window(&self) -> Duration {
        (self.inner.config.stop_timeout + Duration::from_secs(60)).max(REQUEST_WINDOW_MIN)
    }

    /// Watches until `cancel` fires or `out` is closed, sending everything observed.
    pub async fn observe(&self, out: mpsc::Sender<Observed>, cancel: CancellationToken) {
        let mut tracker = Tracker::new(self.request_window(), now_ns());
        let mut failures = 0u32;
        let mut first = true;
        loop {
            let end = self.session(&mut tracker, &out, &cancel, first).await;
            let wait = match end {
                SessionEnd::Cancelled | SessionEnd::Closed => return,
                SessionEnd::Broken(reason) => {
                    first = false;
                    failures = 0;
                    let wait = reconnect_backoff(failures);
                    warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, "Docker event stream broke; reconnecting.");
                    wait
                }
                SessionEnd::Failed(e) => {
                    let wait = reconnect_backoff(failures);
                    failures = failures.saturating_add(1);
                    warn!(error = %e, attempt = failures, retry_in_ms = wait.as_millis() as u64, "Cannot watch Docker; retrying.");
                    wait
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = sleep(wait) => {}
            }
        }
    }

    async fn session(
        &self,
        tracker: &mut Tracker,
        out: &mpsc::Sender<Observed>,
        cancel: &CancellationToken,
        first: bool,
    ) -> SessionEnd {
        let setup = async {
            let docker = self.client().await?;
            let now = now_ns();
            // 1. Replay what the stream missed, up to now.
            let events_lost = match tracker.last_event_ns() {
                Some(since) => {
                    let replay = self.replay(&docker, since, now).await?;
                    let lost = !replay.iter().any(|ev| tracker.is_last(ev));
                    for ev in replay {
                        if !self.handle(&docker, tracker, &ev, out).await {
                            return Ok(None);
                        }
                    }
                    lost
                }
                None => false,
            };
            // 2. Reconcile with a listing.
            let listing = self.listing(&docker).await?;
            let outcomes = tracker.reconcile(&listing, events_lost, now, &|id| self.is_marked(id));
            if !first || !outcomes.is_empty() {
                info!(selector = %self.selector(), events_lost, containers = listing.len(), changes = outcomes.len(), "Reconciled with Docker's container list.");
            }
            for o in outcomes {
                if !self.emit(&docker, o, out).await {
                    return Ok(None);
                }
            }
            // 3. Follow the live stream from the listing's time (Docker replays the gap).
            let options = EventsOptions {
                since: Some(docker_ts(now)),
                until: None,
                filters: Some(self.event_filters()),
            };
            Ok::<_, ContainerError>(Some((docker.clone(), docker.events(Some(options)))))
        };
        let (docker, mut stream) = tokio::select! {
            () = cancel.cancelled() => return SessionEnd::Cancelled,
            r = setup => match r {
                Ok(Some(s)) => s,
                Ok(None) => return SessionEnd::Closed,
                Err(e) => return SessionEnd::Failed(e),
            },
        };
        if first {
            info!(selector = %self.selector(), "Watching the game container's events.");
        }
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return SessionEnd::Cancelled,
                n = stream.next() => n,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return SessionEnd::Broken(e.to_string()),
                None => return SessionEnd::Broken("the daemon closed the stream".to_string()),
            };
            let Some(ev) = self.ev(&msg) else { continue };
            let handled = tokio::select! {
                () = cancel.cancelled() => return SessionEnd::Cancelled,
                h = self.handle(&docker, tracker, &ev, out) => h,
            };
            if !handled {
                return SessionEnd::Closed;
            }
        }
    }

    /// The events between `since` and `until` that Docker still holds.
    async fn replay(
        &self,
        docker: &Docker,
        since: i64,
        until: i64,
    ) -> Result<Vec<Ev>, ContainerError> {
        let options = EventsOptions {
            since: Some(docker_ts(since)),
            until: Some(docker_ts(until)),
            filters: Some(self.event_filters()),
        };
        let stream = docker.events(Some(options));
        let collect = collect_events(stream);
        let msgs = timeout(CALL_TIMEOUT, collect)
            .await
            .map_err(|_| timed_out("events (replay)", CALL_TIMEOUT))?
            .map_err(docker_err("events (replay)"))?;
        Ok(msgs.iter().filter_map(|m| self.ev(m)).collect())
    }

    /// The selected containers, with the state an inspect gives.
    async fn listing(&self, docker: &Docker) -> Result<Vec<Snapshot>, ContainerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(self.filters()),
            ..Default::default()
        };
        let summaries = timeout(CALL_TIMEOUT, docker.list_containers(Some(options)))
            .await
            .map_err(|_| timed_out("list containers", CALL_TIMEOUT))?
            .map_err(docker_err("list containers"))?;
        let mut out = Vec::new();
        for s in summaries.into_iter().filter(|s| self.summary_selected(s)) {
            let Some(id) = s.id else { continue };
            let inspected = timeout(
                CALL_TIMEOUT,
                docker.inspect_container(&id, None::<InspectContainerOptions>),
            )
            .await
            .map_err(|_| timed_out("inspect container", CALL_TIMEOUT))?;
            let c = match inspected {
                Ok(c) => c,
                // Removed between the listing and the inspect: as if it were not listed.
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(docker_err("inspect container")(e)),
            };
            let state = c.state.unwrap_or_default();
            out.push(Snapshot {
                id,
                name: c
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                running: state.running.unwrap_or(false),
                started_ns: state.started_at.as_deref().and_then(parse_docker_time),
                finished_ns: state.finished_at.as_deref().and_then(parse_docker_time),
                exit_code: state.exit_code.unwrap_or(-1),
                oom_killed: state.oom_killed.unwrap_or(false),
            });
        }
        Ok(out)
    }

    fn summary_selected(&self, s: &ContainerSummary) -> bool {
        let empty = HashMap::new();
        let labels = s.labels.as_ref().unwrap_or(&empty);
        let names = s.names.as_deref().unwrap_or_default();
        match self.selector() {
            ContainerSelector::EcsContainerName(_) => {
                classify::selects(self.selector(), "", labels)
            }
            ContainerSelector::DockerName(_) => names
                .iter()
                .any(|n| classify::selects(self.selector(), n, labels)),
        }
    }

    /// The event, if it concerns a selected container.
    fn ev(&self, msg: &EventMessage) -> Option<Ev> {
        let actor = msg.actor.as_ref()?;
        let id = actor.id.clone()?;
        let empty = HashMap::new();
        let attributes = actor.attributes.as_ref().unwrap_or(&empty);
        let name = attributes.get("name").cloned().unwrap_or_default();
        if !classify::selects(self.selector(), &name, attributes) {
            return None;
        }
        let time_ns = msg
            .time_nano
            .or_else(|| msg.time.map(|s| s.saturating_mul(1_000_000_000)))
            .unwrap_or_else(now_ns);
        Some(Ev {
            id,
            name,
            action: Action::parse(msg.action.as_deref().unwrap_or_default(), attributes),
            time_ns,
        })
    }

    /// Classifies one event and sends what it produced. False when the consumer is gone.
    async fn handle(
        &self,
        docker: &Docker,
        tracker: &mut Tracker,
        ev: &Ev,
        out: &mpsc::Sender<Observed>,
    ) -> bool {
        debug!(id = %short(&ev.id), action = ?ev.action, "Docker event.");
        let agent = matches!(ev.action, Action::Die { .. }) && self.is_marked(&ev.id);
        match tracker.event(ev, agent) {
            Some(o) => self.emit(docker, o, out).await,
            None => true,
        }
    }

    /// Completes an outcome (OOM check, log tail of a crash), logs it and sends it.
    async fn emit(
        &self,
        docker: &Docker,
        mut outcome: Outcome,
        out: &mpsc::Sender<Observed>,
    ) -> bool {
        match &mut outcome {
            Outcome::Running { id, name, .. } => {
                info!(id = %short(id), name = %name, "Game container started.");
            }
            Outcome::Oom { id, name, .. } => {
                warn!(id = %short(id), name = %name, "Game container ran out of memory.");
            }
            Outcome::Health {
                id, name, status, ..
            } => {
                info!(id = %short(id), name = %name, status = %status, "Game container health changed.");
            }
            Outcome::Exited(exit) => {
                // An OOM kill is a SIGKILL: confirm it when the `oom` event did not come first.
                // containerd before 2.2 may send the OOM after the exit (containerd#12714), so
                // an unrequested kill is asked about for a short while.
                if exit.exit_code == 137 && !exit.oom_killed {
                    let settle = if exit.requested {
                        Duration::ZERO
                    } else {
                        OOM_SETTLE
                    };
                    exit.oom_killed = self.oom_killed(docker, &exit.id, settle).await;
                }
                if exit.crash() {
                    exit.log_tail = self.log_tail(docker, &exit.id).await;
                }
                info!(
                    id = %short(&exit.id),
                    name = %exit.name,
                    exit_code = exit.exit_code,
                    requested = exit.requested,
                    oom_killed = exit.oom_killed,
                    crash = exit.crash(),
                    reason = %exit.reason,
                    "Game container exited; {}.", if exit.crash() { "a crash" } else { "not a crash" }
                );
            }
        }
        out.send(outcome).await.is_ok()
    }

    /// Docker's `State.OOMKilled`, asked again every 200 ms for up to `settle` while it is
    /// false (a late OOM event sets it after the exit).
    async fn oom_killed(&self, docker: &Docker, id: &str, settle: Duration) -> bool {
        let until = Instant::now() + settle;
        loop {
            let killed = self.oom_killed_now(docker, id).await;
            if killed || Instant::now() >= until {
                return killed;
            }
            sleep(OOM_POLL).await;
        }
    }

    async fn oom_killed_now(&self, docker: &Docker, id: &str) -> bool {
        match timeout(
            CALL_TIMEOUT,
            docker.inspect_container(id, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(Ok(c)) => c.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Ok(Err(e)) => {
                warn!(id = %short(id), error = %e, "Cannot inspect the exited container; assuming no OOM kill.");
                false
            }
            Err(_) => {
                warn!(id = %short(id), "Inspecting the exited container timed out; assuming no OOM kill.");
                false
            }
        }
    }

    /// The last `alert_log_lines` lines of stdout and stderr. A failure gives one line that
    /// says why, so the alert still tells the operator something.
    async fn log_tail(&self, docker: &Docker, id: &str) -> Vec<String> {
        let n = self.inner.config.alert_log_lines;
        if n == 0 {
            return Vec::new();
        }
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: n.to_string(),
            ..Default::default()
        };
        let collect = async {
            let mut bytes = Vec::new();
            let mut logs = docker.logs(id, Some(options));
            while let Some(chunk) = logs.next().await {
                bytes.extend_from_slice(chunk?.as_ref());
            }
            Ok::<_, BollardError>(bytes)
        };
        match timeout(CALL_TIMEOUT, collect).await {
            Ok(Ok(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                lines[lines.len().saturating_sub(n)..].to_vec()
            }
            Ok(Err(e)) => {
                warn!(id = %short(id), error = %e, "Cannot read the crashed container's logs.");
                vec![format!("(the logs could not be read: {e})")]
            }
            Err(_) => {
                warn!(id = %short(id), "Reading the crashed container's logs timed out.");
                vec!["(the logs could not be read in time)".to_string()]
            }
        }
    }

    /// The newest running selected container: (id, name).
    async fn running(&self, docker: &Docker) -> Result<Option<(String, String)>, ContainerError> {
        let options = ListContainersOptions {
            all: false,
            filters: Some(self.filters()),
            ..Default::default()
        };
        let mut summaries: Vec<ContainerSummary> =
            timeout(CALL_TIMEOUT, docker.list_containers(Some(options)))
                .await
                .map_err(|_| timed_out("list containers", CALL_TIMEOUT))?
                .map_err(docker_err("list containers"))?
                .into_iter()
                .filter(|s| self.summary_selected(s))
                .collect();
        summaries.sort_by_key(|s| std::cmp::Reverse(s.created.unwrap_or(0)));
        if summaries.len() > 1 {
            warn!(selector = %self.selector(), running = summaries.len(), "Several game containers run; stopping the newest.");
        }
        Ok(summaries.into_iter().next().and_then(|s| {
            let name = s
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            Some((s.id?, name))
        }))
    }

    /// Runs the pre-stop command in the container, within [`pre_stop_timeout`].
    async fn pre_stop(&self, docker: &Docker, id: &str) -> PreStopReport {
        let limit = pre_stop_timeout(self.inner.config.stop_timeout);
        let mut output = Vec::new();
        let run = async {
            let exec = docker
                .create_exec(
                    id,
                    CreateExecOptions {
                        cmd: Some(self.inner.config.pre_stop_command.clone()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(docker_err("exec create"))?;
            match docker
                .start_exec(&exec.id, Some(StartExecOptions::default()))
                .await
                .map_err(docker_err("exec start"))?
            {
                StartExecResults::Attached {
                    output: mut stream, ..
                } => {
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(docker_err("exec output"))?;
                        output.extend_from_slice(chunk.as_ref());
                        if output.len() > 2 * PRE_STOP_OUTPUT_MAX {
                            output.drain(..output.len() - PRE_STOP_OUTPUT_MAX);
                        }
                    }
                }
                StartExecResults::Detached => {}
            }
            // The output ends when the process does; its exit code may lag a moment.
            loop {
                let inspect = docker
                    .inspect_exec(&exec.id)
                    .await
                    .map_err(docker_err("exec inspect"))?;
                if inspect.running != Some(true) {
                    return Ok::<_, ContainerError>(inspect.exit_code);
                }
                sleep(Duration::from_millis(50)).await;
            }
        };
        let result = timeout(limit, run).await;
        let text = String::from_utf8_lossy(&output);
        let start = text.len().saturating_sub(PRE_STOP_OUTPUT_MAX);
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        let mut output = text[start..].trim().to_string();
        let (exit_code, timed_out) = match result {
            Ok(Ok(code)) => (code, false),
            Ok(Err(e)) => {
                output = if output.is_empty() {
                    e.to_string()
                } else {
                    format!("{output}\n{e}")
                };
                (None, false)
            }
            Err(_) => (None, true),
        };
        PreStopReport {
            exit_code,
            output,
            timed_out,
        }
    }
}

async fn collect_events(
    mut stream: impl Stream<Item = Result<EventMessage, BollardError>> + Unpin,
) -> Result<Vec<EventMessage>, BollardError> {
    let mut out = Vec::new();
    while let Some(m) = stream.next().await {
        out.push(m?);
    }
    Ok(out)
}

#[async_trait]
impl Containers for DockerContainers {
    async fn watch(&self, events: mpsc::Sender<ContainerEvent>, cancel: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<Observed>(64);
        let forward = async move {
            while let Some(o) = rx.recv().await {
                if let Some(ev) = o.container_event()
                    && events.send(ev).await.is_err()
                {
                    return;
                }
            }
        };
        // Both halves run in this task: dropping `rx` (consumer gone) ends `observe` too.
        tokio::join!(self.observe(tx, cancel), forward);
    }

    async fn prepare_image(&self, image: &str) -> Result<bool, ContainerError> {
        let docker = self.client().await?;
        match docker.inspect_image(image).await {
            Ok(_) => return Ok(false),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(docker_err("inspect image")(e)),
        }
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut pull = docker.create_image(Some(options), None, None);
        while let Some(progress) = pull.next().await {
            let info = progress.map_err(docker_err("pull image"))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(ContainerError::Docker {
                    call: "pull image",
                    reason: detail,
                });
            }
        }
        Ok(true)
    }

    async fn graceful_stop(&self) -> Result<StopReport, ContainerError> {
        let began = Instant::now();
        let docker = self.client().await?;
        let Some((id, name)) = self.running(&docker).await? else {
            info!(selector = %self.selector(), "No game container is running; nothing to stop.");
            return Ok(StopReport {
                container: None,
                pre_stop: None,
                exited_on_its_own: false,
                exit_code: None,
                duration: began.elapsed(),
            });
        };
        // Before the pre-stop command: it may end the game itself, and that exit is requested.
        self.mark_stop(&id);
        let stop_timeout = self.inner.config.stop_timeout;
        let pre_stop = if self.inner.config.pre_stop_command.is_empty() {
            None
        } else {
            let limit = pre_stop_timeout(stop_timeout);
            info!(id = %short(&id), name = %name, command = ?self.inner.config.pre_stop_command, timeout_s = limit.as_secs(), "Running the pre-stop command.");
            let r = self.pre_stop(&docker, &id).await;
            if r.exit_code == Some(0) {
                info!(id = %short(&id), exit_code = r.exit_code, output = %r.output, "Pre-stop command succeeded.");
            } else {
                warn!(id = %short(&id), exit_code = r.exit_code, timed_out = r.timed_out, output = %r.output, "Pre-stop command failed; stopping anyway.");
            }
            Some(r)
        };
        info!(id = %short(&id), name = %name, stop_timeout_s = stop_timeout.as_secs(), "Stopping the game container.");
        let stop_began = Instant::now();
        let mut stopper = docker.clone();
        stopper.set_timeout(stop_timeout + Duration::from_secs(30));
        let options = StopContainerOptions {
            t: Some(i32::try_from(stop_timeout.as_secs()).unwrap_or(i32::MAX)),
            signal: None,
        };
        match stopper.stop_container(&id, Some(options)).await {
            Ok(()) => {}
            // Gone already (the pre-stop command ended it and it was removed): nothing to stop.
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Ok(StopReport {
                    container: Some(name),
                    pre_stop,
                    exited_on_its_own: true,
                    exit_code: None,
                    duration: began.elapsed(),
                });
            }
            Err(e) => return Err(docker_err("stop container")(e)),
        }
        let stop_took = stop_began.elapsed();
        let state = match timeout(
            CALL_TIMEOUT,
            docker.inspect_container(&id, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(Ok(c)) => c.state.unwrap_or_default(),
            Ok(Err(e)) => {
                warn!(id = %short(&id), error = %e, "Cannot inspect the stopped container.");
                Default::default()
            }
            Err(_) => Default::default(),
        };
        let exit_code = state.exit_code;
        // Docker sends SIGKILL only once the timeout has passed; death by SIGKILL (137) after
        // that long, or an OOM kill, means the game did not exit on its own.
        let killed =
            exit_code == Some(137) && (stop_took >= stop_timeout || state.oom_killed == Some(true));
        Ok(StopReport {
            container: Some(name),
            pre_stop,
            exited_on_its_own: !killed,
            exit_code,
            duration: began.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times() {
        assert_eq!(docker_ts(1_795_343_304_660_959_308), "1795343304.660959308");
        assert_eq!(docker_ts(5), "0.000000005");
        assert_eq!(
            parse_docker_time("2026-11-22T10:28:01.121039999Z"),
            Some(1_795_343_281_121_039_999)
        );
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time(""), None);
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(reconnect_backoff(0), Duration::from_millis(250));
        assert_eq!(reconnect_backoff(2), Duration::from_millis(1000));
        assert_eq!(reconnect_backoff(50), Duration::from_secs(5));
    }

    #[test]
    fn pre_stop_bounds() {
        assert_eq!(
            pre_stop_timeout(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(pre_stop_timeout(Duration::from_secs(300)), PRE_STOP_MAX);
        assert_eq!(
            graceful_stop_bound(Duration::from_secs(120)),
            Duration::from_secs(210)
        );
    }
}
