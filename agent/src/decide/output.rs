//! What the core returns: the actions the run loop carries out, the alerts and the reasons they
//! give, the metrics, and the verdict on each sample.

use std::fmt;
use std::time::Duration;

/// Why a graceful stop or drain was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCause {
    Terminating,
    SpotInterruption,
    SystemShutdown,
    /// Only the agent is stopping (for example `systemctl restart`); the game keeps running.
    AgentStop,
}

impl fmt::Display for DrainCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Terminating => "the instance is terminating",
            Self::SpotInterruption => "a Spot interruption notice arrived",
            Self::SystemShutdown => "the system is shutting down",
            Self::AgentStop => "the agent was asked to stop",
        })
    }
}

/// What the stop's record keeps besides its reason, for the operator's `status` (docs/cloud.md,
/// "The operator's command"): the players the probe last counted (none without an answer) and
/// how long the instance had been up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopFacts {
    pub players: Option<u32>,
    pub up_for: Duration,
}

/// Why the agent scales to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleReason {
    Idle {
        idle_for: Duration,
    },
    Crash {
        exit_code: i64,
        oom_killed: bool,
        crashes: u32,
    },
    /// Up for `max_uptime`: asked for (`stop_on_max_uptime`), or the backstop, when no player
    /// has been confirmed for `unconfirmed_for`.
    MaxUptime {
        uptime: Duration,
        unconfirmed_for: Option<Duration>,
    },
    /// Nobody came in the `unused_after` after the game was up (rule 12).
    Unused {
        up_for: Duration,
    },
    /// The game never started (see [`StartFailure`]).
    NeverStarted(StartFailure),
}

impl ScaleReason {
    /// The short reason used in the `scale_in_requested` log event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Idle { .. } => "idle",
            Self::Crash { .. } => "crash",
            Self::MaxUptime { .. } => "max_uptime",
            Self::Unused { .. } => "unused",
            Self::NeverStarted(_) => "never_started",
        }
    }
}

impl fmt::Display for ScaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle { idle_for } => write!(
                f,
                "no players for {}",
                humantime::format_duration(Duration::from_secs(idle_for.as_secs()))
            ),
            Self::Crash {
                exit_code,
                oom_killed: true,
                crashes,
            } => write!(
                f,
                "the game was killed for lack of memory (exit code {exit_code}, crash {crashes} in a row)"
            ),
            Self::Crash {
                exit_code, crashes, ..
            } => write!(
                f,
                "the game crashed with exit code {exit_code} (crash {crashes} in a row)"
            ),
            Self::MaxUptime {
                uptime,
                unconfirmed_for: None,
            } => write!(
                f,
                "the instance has been up for {}",
                humantime::format_duration(Duration::from_secs(uptime.as_secs()))
            ),
            Self::MaxUptime {
                uptime,
                unconfirmed_for: Some(quiet),
            } => write!(
                f,
                "the instance has been up for {} with no player confirmed for {}",
                humantime::format_duration(Duration::from_secs(uptime.as_secs())),
                humantime::format_duration(Duration::from_secs(quiet.as_secs()))
            ),
            Self::Unused { up_for } => write!(
                f,
                "nobody came in the {} the game was up",
                humantime::format_duration(Duration::from_secs(up_for.as_secs()))
            ),
            Self::NeverStarted(failure) => write!(f, "the game never started: {failure}"),
        }
    }
}

/// Why the game never started (the `never_started` outcome, rule 11 of the core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// No container of the game ran within `start_within` of the instance going into service.
    /// `why` is what the Docker API said when the agent looked (the pull error of the image, or
    /// that the image is there and nothing ran it).
    NoContainer { waited: Duration, why: String },
    /// The game's container exited before the game was ever up (before the probe's first
    /// answer), `crashes` times in a row.
    Exited {
        exit_code: i64,
        oom_killed: bool,
        crashes: u32,
        container: String,
        log_tail: Vec<String>,
    },
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoContainer { waited, why } => write!(
                f,
                "no container of the game ran within {} ({why})",
                humantime::format_duration(Duration::from_secs(waited.as_secs()))
            ),
            Self::Exited {
                exit_code,
                oom_killed: true,
                ..
            } => write!(
                f,
                "its container was killed for lack of memory before the game was up (exit code {exit_code})"
            ),
            Self::Exited {
                exit_code, crashes, ..
            } => write!(
                f,
                "its container exited with code {exit_code} before the game was up ({crashes} time(s) in a row)"
            ),
        }
    }
}

/// The kinds of notification events, by the names the config uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Online,
    Players,
    IdleStop,
    Crash,
    MaxUptime,
    NeedsOperator,
    NeverStarted,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        Self::Online,
        Self::Players,
        Self::IdleStop,
        Self::Crash,
        Self::MaxUptime,
        Self::NeedsOperator,
        Self::NeverStarted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Players => "players",
            Self::IdleStop => "idle_stop",
            Self::Crash => "crash",
            Self::MaxUptime => "max_uptime",
            Self::NeedsOperator => "needs_operator",
            Self::NeverStarted => "never_started",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Something only an operator can fix. The agent keeps working (and never idles on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The instance metadata service did not answer at boot: no DNS, no scaling.
    NoMetadata,
    /// The packet counter cannot be opened: every sample is unknown, so it never idles.
    NoPacketCounter { error: String },
    /// Docker cannot be reached: crashes are not seen, the game is not saved by the agent.
    NoDocker { error: String },
    /// CompleteLifecycleAction keeps failing.
    LifecycleStuck { error: String },
    /// The record cannot be pointed at this instance: players cannot find it.
    DnsStuck { error: String },
    /// The group cannot be scaled to zero: the instance keeps running.
    ScaleInStuck { error: String },
    /// The record cannot be set back to the placeholder: it may point at a stopped instance.
    RevertStuck { error: String },
    /// `failures` publishes of the metrics in a row failed: the heartbeat alarm, which reads
    /// them, will scale the server in (through the save) if it goes on.
    MetricsStuck { failures: u32, error: String },
    /// AWS refused a call for a reason retrying cannot fix (a permission, a name in the
    /// config): `what` the agent was doing, the `fix`, and the error. Told once per fix; the
    /// call is retried slowly (`retry::PERMANENT_RETRY`) if it must happen.
    Refused {
        what: String,
        fix: String,
        error: String,
    },
    /// `wakes` wakes in the last day had nobody join, the budget: lookups no longer wake the
    /// server until the oldest is a day old, or a wake someone joins.
    WakeBudgetSpent { wakes: u32, budget: u32 },
}

impl Problem {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NoMetadata => "no_metadata",
            Self::NoPacketCounter { .. } => "no_packet_counter",
            Self::NoDocker { .. } => "no_docker",
            Self::LifecycleStuck { .. } => "lifecycle_stuck",
            Self::DnsStuck { .. } => "dns_stuck",
            Self::ScaleInStuck { .. } => "scale_in_stuck",
            Self::RevertStuck { .. } => "revert_stuck",
            Self::MetricsStuck { .. } => "metrics_stuck",
            Self::Refused { .. } => "refused",
            Self::WakeBudgetSpent { .. } => "wake_budget_spent",
        }
    }
}

/// An event for people (players in a chat, the operator by e-mail), sent once per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// The record points here and the game is ready. `uptime`: since the instance started.
    Online {
        uptime: Duration,
    },
    /// The player count changed (rate-limited by the notifier).
    Players {
        online: u32,
        max: u32,
    },
    /// The idle server's game was stopped (and saved) before the instance goes away.
    /// `unused`: nobody came at all in this wake (rule 12), rather than players who left.
    IdleStop {
        idle_for: Duration,
        uptime: Duration,
        saved: Option<bool>,
        unused: bool,
    },
    /// Idle, but `[scaling]` is not configured: the instance keeps running.
    IdleNoScaling {
        idle_for: Duration,
        detail: String,
    },
    Crash {
        exit_code: i64,
        oom_killed: bool,
        crashes: u32,
        container: String,
        log_tail: Vec<String>,
        scaling_in: bool,
    },
    /// Up for `max_uptime`. `unconfirmed_for`: the backstop stops it, no player having been
    /// confirmed for that long (the count or the traffic could not be measured).
    MaxUptime {
        uptime: Duration,
        scaling_in: bool,
        unconfirmed_for: Option<Duration>,
    },
    NeedsOperator(Problem),
    /// The game never started; `scaling_in` when the agent scales to zero for it.
    NeverStarted {
        failure: StartFailure,
        scaling_in: bool,
    },
}

impl Alert {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Online { .. } => EventKind::Online,
            Self::Players { .. } => EventKind::Players,
            Self::IdleStop { .. } | Self::IdleNoScaling { .. } => EventKind::IdleStop,
            Self::Crash { .. } => EventKind::Crash,
            Self::MaxUptime { .. } => EventKind::MaxUptime,
            Self::NeedsOperator(_) => EventKind::NeedsOperator,
            Self::NeverStarted { .. } => EventKind::NeverStarted,
        }
    }
}

/// How a wake ended, told once per boot when the game is stopped for the instance's end:
/// whether a player came in it, and how long the agent had been up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeOutcome {
    pub joined: bool,
    pub up_for: Duration,
}

/// The metrics of one interval, for the CloudWatch adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsBatch {
    /// Sum of inbound packets over the interval; `None` if no sample was counted.
    pub inbound_packets: Option<u64>,
    /// The last player count, when probed.
    pub players_online: Option<u32>,
    pub idle_seconds: f64,
    pub container_running: bool,
    /// The wake's outcome, in the batch after the game's stop began (once per boot): the
    /// dashboard counts wakes and the ones with players from it.
    pub wake: Option<WakeOutcome>,
}

/// A side effect the run loop must carry out. Each is fed back as a [`Completion`](super::Completion) where the
/// core waits for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Point the record at this instance (UPSERT), then report [`Completion::DnsUpdated`](super::Completion::DnsUpdated).
    UpdateDns,
    /// Set the group's desired capacity to 0, and keep why on the group for the operator.
    ScaleToZero(ScaleReason, StopFacts),
    Alert(Alert),
    /// Save and stop the game. `heartbeat`: keep the lifecycle action alive while it runs.
    GracefulStop {
        cause: DrainCause,
        heartbeat: bool,
    },
    /// Set the record back to the placeholder, if it still holds our address.
    RevertDns,
    PublishMetrics {
        batch: MetricsBatch,
        flush: bool,
    },
    CompleteLifecycle,
    /// Prepare what the next start needs (pull the game's image) while the instance goes into
    /// the warm pool, then report [`Completion::Prepared`](super::Completion::Prepared). Nothing visible changes.
    PrepareForPool,
    /// Complete the launching hook: the instance may go into the warm pool, or into service.
    CompleteLaunch,
    /// No container of the game has run within `start_within`: find out why from the Docker
    /// API (pull the image, or see that it is there), then report
    /// [`Completion::StartDiagnosed`](super::Completion::StartDiagnosed).
    DiagnoseStart {
        waited: Duration,
    },
    /// Write this wake's outcome into the wake budget's ledger (rule 12): `joined` clears it, a
    /// wake nobody joined adds to it; then report [`Completion::WakeRecorded`](super::Completion::WakeRecorded).
    RecordWake {
        joined: bool,
    },
    /// Keep this wake's outcome on the group, among the last day's, for the operator's
    /// `status` (a few attempts; nothing waits for it).
    RecordWakeOutcome(WakeOutcome),
    /// Everything is done: the run loop returns and the agent exits 0.
    Exit,
}

/// How the core judged one observation, for the `sample` and `idle_countdown` log lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub active: bool,
    /// Why it counts as active or quiet, in a few words.
    pub basis: &'static str,
    /// How long no sample has been active.
    pub idle_for: Duration,
    /// Time left until idle, when counting down.
    pub remaining: Option<Duration>,
}

/// What one call of [`Core::handle`](super::Core::handle) produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Output {
    pub actions: Vec<Action>,
    pub verdict: Option<Verdict>,
}
