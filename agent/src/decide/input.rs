//! What the core takes: the observations of one sample, container and lifecycle events,
//! signals, and the completions of the actions it asked for.

use std::time::Duration;

use super::output::Problem;

/// Inbound packets counted over one sample interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketReading {
    /// Counted: the total, and the count per configured port spec (by its text).
    Known {
        total: u64,
        by_port: Vec<(String, u64)>,
    },
    /// Counting failed (no socket, interface gone...). Never zero.
    Unknown { reason: String },
}

/// The answer of the game's player-count probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeReading {
    Players { online: u32, max: u32 },
    Failed { error: String },
}

/// One sample: what the sampler saw over `interval`, ending at the time it is handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub interval: Duration,
    pub packets: PacketReading,
    /// `None` when no probe is configured.
    pub probe: Option<ProbeReading>,
    /// Whether the keep-awake file exists (`None` if that could not be checked).
    pub keep_awake: Option<bool>,
}

/// The game container's events, already classified by the container adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    /// The game container is running (started, or found running at a reconcile).
    Running { id: String, name: String },
    /// It exited. `requested` is true when the agent or Docker's stop API asked for it.
    Exited {
        id: String,
        name: String,
        exit_code: i64,
        requested: bool,
        oom_killed: bool,
        /// The last log lines, fetched for crashes only.
        log_tail: Vec<String>,
    },
}

/// The instance's Auto Scaling lifecycle state, from IMDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleState {
    /// Pending: not yet in service.
    Pending,
    InService,
    /// The group is terminating this instance (target state `Terminated`).
    Terminating,
    /// In a warm pool (`Warmed:Stopped`, `Warmed:Running`, ...). Nothing visible happens.
    Warmed(String),
    /// Not in an Auto Scaling group: behaves as in service.
    Standalone,
}

impl LifecycleState {
    /// Parses IMDS `autoscaling/target-lifecycle-state`.
    pub fn from_imds(s: &str) -> Self {
        let s = s.trim();
        match s {
            "InService" => Self::InService,
            // A warm-pool instance terminated from the pool: also a termination.
            "Terminated" | "Terminating" | "Warmed:Terminated" => Self::Terminating,
            "Pending" => Self::Pending,
            w if w.starts_with("Warmed:") => Self::Warmed(w.to_string()),
            _ => Self::Pending,
        }
    }
}

/// The result of an action the run loop carried out, fed back to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    DnsUpdated,
    ScaledIn,
    /// `saved`: the game stopped on its own within the stop timeout (and the pre-stop command,
    /// if any, succeeded); `None` when no game was running.
    GracefulStopDone {
        saved: Option<bool>,
    },
    DnsReverted,
    MetricsFlushed,
    /// A regular (not flush) publish of the metrics ended: `failed` with the error of its last
    /// attempt, or `None` when it went out. `permanent`: AWS refused it (told apart, as
    /// [`Problem::Refused`]).
    MetricsPublished {
        failed: Option<String>,
        permanent: bool,
    },
    LifecycleCompleted,
    /// The instance is prepared for the warm pool (the image pulled, or the attempt given up).
    Prepared,
    /// The launching hook is completed.
    LaunchCompleted,
    /// What the Docker API said about a game that never ran ([`Action::DiagnoseStart`](super::Action::DiagnoseStart)).
    /// `known` is false when the API could not be asked (Docker unreachable): then nobody
    /// knows whether the game runs, and it is not stopped for it.
    StartDiagnosed {
        why: String,
        known: bool,
    },
    /// The ledger was written: how many wakes of the last day nobody joined (`None` for a
    /// joined wake, or when the ledger could not be written).
    WakeRecorded {
        unused_today: Option<u32>,
    },
    /// A must-happen call keeps failing (it is still being retried): an operator must act.
    Stuck(Problem),
}

/// Everything the core reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Observation(Observation),
    Container(ContainerEvent),
    Lifecycle(LifecycleState),
    SpotInterruption,
    /// SIGTERM or SIGINT. `system_stopping` is true when the whole host is shutting down.
    Shutdown {
        system_stopping: bool,
    },
    Done(Completion),
    /// Nothing happened; the core's wake-up time was reached.
    Tick,
}
