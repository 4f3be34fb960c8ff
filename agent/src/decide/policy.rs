//! What the core is built with: the [`Policy`] (the config, reduced to plain values) and what
//! says the game is ready ([`Readiness`]).

use std::time::Duration;

/// What the core needs to know from the config, reduced to plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_packets_per_second: f64,
    pub sample_interval: Duration,
    pub idle_after: Duration,
    pub boot_grace: Duration,
    pub crashes_before_shutdown: u32,
    /// `Some` when `[scaling]` is configured.
    pub max_uptime: Option<Duration>,
    pub stop_on_max_uptime: bool,
    /// Past `max_uptime`, scale in when no player is confirmed (rule 7's backstop).
    pub max_uptime_backstop: bool,
    /// Whether the agent may scale the group (`[scaling]` present).
    pub scaling: bool,
    /// Whether there is a termination lifecycle hook to complete.
    pub lifecycle_hook: bool,
    /// Whether DNS is managed (`[dns]` present).
    pub dns: bool,
    /// `Some` when `[metrics]` is configured.
    pub metrics_interval: Option<Duration>,
    /// Whether there is a launching hook to complete (warm pools).
    pub launch_hook: bool,
    /// Whether an image is to be pulled while the instance is prepared for a warm pool.
    pub prepare_image: bool,
    /// What says the game is up, for the `online` notification.
    pub ready_when: Readiness,
    /// A wake nobody came to ends this long after the game is up (rule 12); `None`: off.
    pub unused_after: Option<Duration>,
    /// How many wakes a day nobody joined before lookups stop waking the server (rule 12's
    /// ledger, kept on the group); `None`: no ledger.
    pub wake_budget: Option<u32>,
    /// How long after going into service a container of the game must have run (rule 11);
    /// `None` when the agent does not watch a container, or the check is off.
    pub start_within: Option<Duration>,
}

/// What tells the core that the game is ready for players (with the record pointing here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The probe's first answer with a player count: the game is loaded and answering.
    ProbeAnswers,
    /// The game container runs (no probe configured).
    ContainerRuns,
    /// Neither a probe nor Docker: as soon as the instance is in service.
    InService,
}
