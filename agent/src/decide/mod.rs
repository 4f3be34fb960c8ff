//! The decision core: a pure state machine that decides whether to scale in, when and why.
//!
//! It takes observations ([`Input`]) and `now`, and returns [`Action`]s plus the next time it
//! wants to be woken ([`Core::next_wake`]). It never reads a clock, never sleeps and never
//! awaits: the run loop owns all of that. Every property that protects players lives here and
//! is tested exhaustively:
//!
//! 1. Nothing is idle during `boot_grace`.
//! 2. The server is idle when no sample has been active for `idle_after`.
//! 3. When a probe answers, its player count decides.
//! 4. A probe error or an unknown sample never makes the server idle; a missing sample (a gap
//!    of more than [`GAP_FACTOR`] sample intervals) counts as active too.
//! 5. The keep-awake file blocks idling.
//! 6. `crashes_before_shutdown` unrequested crashes in a row scale to zero, with one alert.
//! 7. `max_uptime` alerts once, and scales to zero when `stop_on_max_uptime`. Past it, the
//!    backstop (`max_uptime_backstop`, on by default) scales to zero a server with no confirmed
//!    player: no sample in the last `idle_after` counted a player, saw game traffic or found the
//!    keep-awake file (errors in measuring confirm nobody). A server with a confirmed player
//!    only gets the alert; the backstop stops it once the confirmation is `idle_after` old, with
//!    one more alert that says why. It counts from the agent's start at the latest, so a
//!    restarted agent watches for `idle_after` before it can stop anything.
//! 8. Termination and Spot notices: graceful stop, DNS revert, metrics flush, lifecycle action.
//! 9. Warmed states do nothing visible.
//! 10. People are told once per event: `online` when the record points here and the game is
//!     ready (once per boot: a restarted agent is told by [`Core::online_already_told`]),
//!     `idle_stop` only after the game is saved (see [`Alert`]).
//! 11. A game that never starts ends the boot with one `never_started` alert carrying the
//!     reason, and a scale-in (DNS goes back in the drain): no container of the game ran within
//!     `start_within` of going into service (the reason is asked of the Docker API first), or
//!     its container exited, `crashes_before_shutdown` times in a row, before the game was ever
//!     ready (the probe's first answer; without a probe a running container is ready, so such
//!     exits stay crashes). A container that runs is starting, however long it takes to answer:
//!     a game that is slow to load is never `never_started`, and one with players never is.
//! 12. A wake nobody comes to ends sooner: when no sample has been active since the game was
//!     up (ready, as for `online`) and `unused_after` has passed since, scale in (whatever
//!     `boot_grace` and `idle_after` say), and `idle_stop` says nobody came. Once any sample of
//!     this wake is active (a player, game traffic, the keep-awake file, or a count that failed),
//!     the rule is off until the next wake.
//!
//! What it takes is in `input` ([`Input`], [`Observation`], [`Completion`]); what it returns is
//! in `output` ([`Action`], [`Alert`], [`ScaleReason`], [`Verdict`]). This file is the state
//! machine itself ([`Core`]) and the [`Policy`] it is built with; its tests are in `tests.rs`.

use std::time::Duration;

use tokio::time::Instant;

mod drain;
mod evidence;
mod input;
mod output;
mod policy;
mod steps;

pub use evidence::{Evidence, classify};
pub use policy::{Policy, Readiness};
use steps::{Drain, ScaleIn, Step};

pub use input::{
    Completion, ContainerEvent, Input, LifecycleState, Observation, PacketReading, ProbeReading,
};
pub use output::{
    Action, Alert, DrainCause, EventKind, MetricsBatch, Output, Problem, ScaleReason, StartFailure,
    StopFacts, Verdict, WakeOutcome,
};

/// A gap of more than this many sample intervals between two samples counts as unknown
/// activity: if the sampler stalls, the server is kept up rather than idled.
pub const GAP_FACTOR: u32 = 3;

/// After this many failed publishes of the metrics in a row (5 min at the default 60 s
/// interval, half of the heartbeat alarm's 10 breaching minutes), the operator is told.
pub const METRICS_STUCK_AFTER: u32 = 5;

/// A container that has run this long without crashing ends a crash streak.
pub const CRASH_STREAK_RESET: Duration = Duration::from_secs(600);

/// The decision core. Construct it with [`Core::new`], feed it with [`Core::handle`].
#[derive(Debug, Clone)]
pub struct Core {
    policy: Policy,
    booted: Instant,
    lifecycle: Option<LifecycleState>,
    dns_requested: bool,
    /// Whether the instance has been in service while this agent ran.
    served: bool,
    /// Whether it was seen going into a warm pool (and not in service since).
    pooled: bool,
    prepare_requested: bool,
    launch_requested: bool,
    last_active: Instant,
    last_sample: Option<Instant>,
    crash_streak: u32,
    streak_alerted: bool,
    running_since: Option<Instant>,
    container_running: bool,
    /// Whether a container of the game has run in this boot (rule 11).
    ever_ran: bool,
    /// When the instance first went into service in this boot (rule 11 counts from it).
    served_at: Option<Instant>,
    /// The `start_within` check: `Pending` until due, `Running` while the Docker API is asked,
    /// `Done` once decided.
    start_check: Step,
    /// `never_started` is told once per boot.
    never_started_sent: bool,
    scale_in: Option<ScaleIn>,
    max_uptime_fired: bool,
    max_uptime_alerted: bool,
    /// When a sample last confirmed a player (or the keep-awake file), or the agent's start.
    last_confirmed: Instant,
    /// Whether the backstop's own alert went out (once per boot).
    backstop_alerted: bool,
    /// Whether any sample of this agent confirmed a player: until then, a restarted agent past
    /// `max_uptime` does not yet know whether to only alert.
    confirmed_seen: bool,
    idle_without_scaling_noted: bool,
    drain: Option<Drain>,
    // The `online` notification: the record points here, the game is ready, sent once.
    dns_pointed: bool,
    game_ready: bool,
    online_sent: bool,
    /// The last player count reported in a `players` notification (the first answer is the
    /// baseline, not a change).
    players_reported: Option<u32>,
    /// Set by an idle scale-in: the `idle_stop` notification goes out once the game is saved
    /// (how long it was idle, and whether nobody came at all).
    idle_stop_pending: Option<(Duration, bool)>,
    /// When the game was first up in this wake (rule 12 counts from it).
    ready_at: Option<Instant>,
    /// Whether a sample of this wake, since the game was up, was active (rule 12 is off then).
    someone_came: bool,
    /// Whether the operator was told that the wake budget is spent (once per boot).
    budget_told: bool,
    /// Whether this wake's outcome was told (once per boot, when the game's stop begins), and
    /// the outcome while the metrics have not carried it yet.
    wake_told: bool,
    wake_unpublished: Option<WakeOutcome>,
    /// The fixes of the refused calls the operator was told of (each once per boot).
    refused_told: Vec<String>,
    /// Failed publishes of the metrics in a row, and whether this streak was told.
    metrics_failures: u32,
    metrics_told: bool,
    // Metrics accumulated since the last publish.
    next_metrics: Option<Instant>,
    packets_sum: Option<u64>,
    players: Option<u32>,
    /// The time of the input being handled.
    now: Instant,
}

impl Core {
    /// `now` is the agent's start; `uptime` is how long the instance had been up by then.
    pub fn new(policy: Policy, now: Instant, uptime: Duration) -> Self {
        let booted = now.checked_sub(uptime).unwrap_or(now);
        let next_metrics = policy.metrics_interval.map(|i| now + i);
        let start_check = if policy.start_within.is_some() {
            Step::Pending
        } else {
            Step::Skip
        };
        Self {
            policy,
            booted,
            lifecycle: None,
            dns_requested: false,
            served: false,
            pooled: false,
            prepare_requested: false,
            launch_requested: false,
            last_active: now,
            last_sample: None,
            crash_streak: 0,
            streak_alerted: false,
            running_since: None,
            container_running: false,
            ever_ran: false,
            served_at: None,
            start_check,
            never_started_sent: false,
            scale_in: None,
            max_uptime_fired: false,
            max_uptime_alerted: false,
            last_confirmed: now,
            backstop_alerted: false,
            confirmed_seen: false,
            idle_without_scaling_noted: false,
            drain: None,
            dns_pointed: false,
            game_ready: false,
            online_sent: false,
            players_reported: None,
            idle_stop_pending: None,
            ready_at: None,
            someone_came: false,
            budget_told: false,
            wake_told: false,
            wake_unpublished: None,
            refused_told: Vec::new(),
            metrics_failures: 0,
            metrics_told: false,
            next_metrics,
            packets_sum: None,
            players: None,
            now,
        }
    }

    /// The next time the core wants [`Input::Tick`], if any.
    pub fn next_wake(&self) -> Option<Instant> {
        if self.drain.is_some() {
            return None;
        }
        // The alert-only message waits for a confirmed player while the backstop is armed
        // (see `timers`): no wake-up for it then, the backstop's own is due.
        let max_uptime = match (self.policy.max_uptime, self.max_uptime_fired) {
            (Some(m), false) if self.confirmed_seen || self.backstop_due().is_none() => {
                Some(self.booted + m)
            }
            _ => None,
        };
        [
            max_uptime,
            self.next_metrics,
            self.start_deadline(),
            self.backstop_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the `start_within` check is due, while it is still to be made.
    fn start_deadline(&self) -> Option<Instant> {
        match (self.start_check, self.served_at, self.policy.start_within) {
            (Step::Pending, Some(at), Some(within))
                if !self.ever_ran && !self.game_ready && !self.warmed() =>
            {
                Some(at + within)
            }
            _ => None,
        }
    }

    /// When rule 7's backstop scales in, while it is armed: past `max_uptime`, `idle_after` after
    /// the last confirmed player.
    fn backstop_due(&self) -> Option<Instant> {
        let p = &self.policy;
        let max = p.max_uptime?;
        let armed = p.max_uptime_backstop
            && !p.stop_on_max_uptime
            && p.scaling
            && self.scale_in.is_none()
            && self.drain.is_none()
            && !self.warmed();
        armed.then(|| (self.booted + max).max(self.last_confirmed + p.idle_after))
    }

    /// The game was announced `online` in this boot already, by an agent that ran before this
    /// one (restarted, upgraded): rule 10 tells it once per boot, not once per agent.
    pub fn online_already_told(&mut self) {
        self.online_sent = true;
    }

    /// Whether the core has emitted [`Action::Exit`].
    pub fn finished(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| d.exit_sent)
    }

    /// How long the server has been without activity at `now`.
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_active)
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Output {
        self.now = now;
        let mut out = Output::default();
        match input {
            Input::Observation(obs) => self.observe(obs, now, &mut out),
            Input::Container(ev) => self.container(ev, now, &mut out),
            Input::Lifecycle(state) => self.lifecycle(state, now, &mut out),
            Input::SpotInterruption => self.start_drain(DrainCause::SpotInterruption),
            Input::Shutdown { system_stopping } => {
                let cause = if system_stopping {
                    DrainCause::SystemShutdown
                } else {
                    DrainCause::AgentStop
                };
                self.start_drain(cause);
            }
            Input::Done(c) => self.done(c, now, &mut out),
            Input::Tick => {}
        }
        self.timers(now, &mut out);
        self.advance_drain(now, &mut out);
        out
    }

    /// Whether an exit is a crash: non-zero or OOM, and requested by nobody (not the agent,
    /// not Docker's stop API, not the instance's termination).
    pub fn is_crash(&self, exit_code: i64, requested: bool, oom_killed: bool) -> bool {
        !(requested || self.stopping()) && (exit_code != 0 || oom_killed)
    }

    fn stopping(&self) -> bool {
        self.drain.is_some() || self.lifecycle == Some(LifecycleState::Terminating)
    }

    /// Whether the game is ready for players (`policy.ready_when`), as `online` and rule 12 see it.
    fn ready(&self) -> bool {
        self.game_ready || self.policy.ready_when == Readiness::InService
    }

    fn warmed(&self) -> bool {
        matches!(self.lifecycle, Some(LifecycleState::Warmed(_)))
    }

    fn observe(&mut self, obs: Observation, now: Instant, out: &mut Output) {
        // Metrics accumulate whatever the state.
        if let PacketReading::Known { total, .. } = &obs.packets {
            self.packets_sum = Some(self.packets_sum.unwrap_or(0).saturating_add(*total));
        }
        if let Some(ProbeReading::Players { online, max }) = &obs.probe {
            self.players = Some(*online);
            if self.policy.ready_when == Readiness::ProbeAnswers {
                self.game_ready = true;
            }
            self.report_players(*online, *max, out);
        }
        self.check_online(now, out);
        if self.ready_at.is_none() && self.served && self.ready() {
            self.ready_at = Some(now);
        }

        let gap = self.last_sample.is_some_and(|prev| {
            now.saturating_duration_since(prev) > self.policy.sample_interval * GAP_FACTOR
        });
        self.last_sample = Some(now);
        let evidence = Evidence::of(&obs, self.policy.min_packets_per_second);
        if evidence.confirms() {
            self.last_confirmed = now;
            self.confirmed_seen = true;
        }
        let (active, basis) = (evidence.active(), evidence.basis());
        let (active, basis) = if gap {
            (true, "samples were missing")
        } else {
            (active, basis)
        };
        if active {
            self.last_active = now;
            if self.ready_at.is_some() && !std::mem::replace(&mut self.someone_came, true) {
                // Someone came: the budget of wakes nobody joined starts again.
                if self.policy.wake_budget.is_some() && self.policy.scaling {
                    out.actions.push(Action::RecordWake { joined: true });
                }
            }
        }
        let idle_for = self.idle_for(now);
        let mut verdict = Verdict {
            active,
            basis,
            idle_for,
            remaining: None,
        };
        if !active && self.drain.is_none() && !self.warmed() {
            let grace_left = (self.booted + self.policy.boot_grace).saturating_duration_since(now);
            let idle_left = self.policy.idle_after.saturating_sub(idle_for);
            let mut remaining = idle_left.max(grace_left);
            // Rule 12: nobody came since the game was up.
            let unused_left = match (self.policy.unused_after, self.ready_at) {
                (Some(after), Some(at)) if !self.someone_came => {
                    Some(after.saturating_sub(now.saturating_duration_since(at)))
                }
                _ => None,
            };
            if let Some(left) = unused_left {
                remaining = remaining.min(left);
            }
            verdict.remaining = Some(remaining);
            if idle_left.is_zero() && grace_left.is_zero() {
                self.idle(idle_for, basis, ScaleReason::Idle { idle_for }, out);
            } else if unused_left.is_some_and(|l| l.is_zero()) {
                let up_for = self
                    .ready_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                // Quiet since it was up: told as the minutes it stood ready for nobody.
                let asked = self.scale_in.is_none() && self.policy.scaling;
                self.idle(up_for, basis, ScaleReason::Unused { up_for }, out);
                if asked && self.policy.wake_budget.is_some() {
                    out.actions.push(Action::RecordWake { joined: false });
                }
            }
        }
        out.verdict = Some(verdict);
    }

    fn idle(&mut self, idle_for: Duration, basis: &str, reason: ScaleReason, out: &mut Output) {
        if !self.policy.scaling {
            if !self.idle_without_scaling_noted {
                self.idle_without_scaling_noted = true;
                out.actions.push(Action::Alert(Alert::IdleNoScaling {
                    idle_for,
                    detail: format!(
                        "{basis}; [scaling] is not configured, so the instance keeps running"
                    ),
                }));
            }
            return;
        }
        if self.scale_in.is_some() {
            return;
        }
        let unused = matches!(reason, ScaleReason::Unused { .. });
        self.request_scale_in(reason, out);
        // Told once the game is saved, when the group terminates the instance.
        self.idle_stop_pending = Some((idle_for, unused));
    }

    /// The `online` notification, once per boot: in service, the record pointing here (when
    /// DNS is managed) and the game ready.
    fn check_online(&mut self, now: Instant, out: &mut Output) {
        let ready = self.ready();
        if self.online_sent
            || !self.served
            || !ready
            || (self.policy.dns && !self.dns_pointed)
            || self.drain.is_some()
            || self.warmed()
        {
            return;
        }
        self.online_sent = true;
        out.actions.push(Action::Alert(Alert::Online {
            uptime: now.saturating_duration_since(self.booted),
        }));
    }

    /// A `players` notification when the count changes after the server is online.
    fn report_players(&mut self, online: u32, max: u32, out: &mut Output) {
        let previous = self.players_reported.replace(online);
        if self.online_sent && self.drain.is_none() && previous.is_some_and(|p| p != online) {
            out.actions
                .push(Action::Alert(Alert::Players { online, max }));
        }
    }

    fn request_scale_in(&mut self, reason: ScaleReason, out: &mut Output) {
        self.scale_in = Some(ScaleIn { done_at: None });
        let facts = StopFacts {
            players: self.players,
            up_for: self.now.saturating_duration_since(self.booted),
        };
        out.actions.push(Action::ScaleToZero(reason, facts));
    }

    fn container(&mut self, ev: ContainerEvent, now: Instant, out: &mut Output) {
        match ev {
            ContainerEvent::Running { .. } => {
                self.container_running = true;
                self.ever_ran = true;
                self.running_since = Some(now);
                if self.policy.ready_when == Readiness::ContainerRuns {
                    self.game_ready = true;
                }
                self.check_online(now, out);
            }
            ContainerEvent::Exited {
                name,
                exit_code,
                requested,
                oom_killed,
                log_tail,
                ..
            } => {
                self.container_running = false;
                self.running_since = None;
                let crash = self.is_crash(exit_code, requested, oom_killed);
                let requested = requested || self.stopping();
                if !crash {
                    if !requested {
                        // A clean exit nobody asked for (for example an in-game /stop) ends a
                        // crash streak: the game shut itself down on purpose.
                        self.end_streak();
                    }
                    return;
                }
                self.crash_streak = self.crash_streak.saturating_add(1);
                if self.crash_streak < self.policy.crashes_before_shutdown || self.streak_alerted {
                    return;
                }
                self.streak_alerted = true;
                let scaling_in = self.policy.scaling && self.scale_in.is_none() && !self.warmed();
                // Rule 11: exits before the game was ever ready are a start that failed.
                if !self.game_ready && self.policy.ready_when == Readiness::ProbeAnswers {
                    self.start_check = Step::Done;
                    let failure = StartFailure::Exited {
                        exit_code,
                        oom_killed,
                        crashes: self.crash_streak,
                        container: name,
                        log_tail,
                    };
                    self.never_started(failure, out);
                    return;
                }
                if scaling_in {
                    self.request_scale_in(
                        ScaleReason::Crash {
                            exit_code,
                            oom_killed,
                            crashes: self.crash_streak,
                        },
                        out,
                    );
                }
                out.actions.push(Action::Alert(Alert::Crash {
                    exit_code,
                    oom_killed,
                    crashes: self.crash_streak,
                    container: name,
                    log_tail,
                    scaling_in,
                }));
            }
        }
    }

    /// Rule 11's outcome: one alert with the reason, and the scale-in (when the agent scales).
    fn never_started(&mut self, failure: StartFailure, out: &mut Output) {
        if std::mem::replace(&mut self.never_started_sent, true) {
            return;
        }
        let scaling_in = self.policy.scaling && self.scale_in.is_none() && !self.warmed();
        if scaling_in {
            self.request_scale_in(ScaleReason::NeverStarted(failure.clone()), out);
        }
        out.actions.push(Action::Alert(Alert::NeverStarted {
            failure,
            scaling_in,
        }));
    }

    fn end_streak(&mut self) {
        self.crash_streak = 0;
        self.streak_alerted = false;
    }

    fn lifecycle(&mut self, state: LifecycleState, now: Instant, out: &mut Output) {
        let in_service = matches!(
            state,
            LifecycleState::InService | LifecycleState::Standalone
        );
        if in_service && self.drain.is_none() {
            self.served = true;
            self.served_at.get_or_insert(now);
            if self.policy.dns && !self.dns_requested {
                self.dns_requested = true;
                out.actions.push(Action::UpdateDns);
            }
            // Out of the warm pool (or a cold launch in a group with a pool): the instance
            // waits in Pending:Wait until the launching hook is completed.
            self.complete_launch(out);
        }
        if let LifecycleState::Warmed(_) = &state
            && !self.served
        {
            self.pooled = true;
            // Going into the pool: prepare, then let the group stop the instance. No DNS, no
            // game, no idle logic.
            if self.drain.is_none() && !self.prepare_requested {
                self.prepare_requested = true;
                if self.policy.prepare_image {
                    out.actions.push(Action::PrepareForPool);
                } else {
                    self.complete_launch(out);
                }
            }
        }
        if state == LifecycleState::Terminating {
            self.start_drain(DrainCause::Terminating);
        }
        self.lifecycle = Some(state);
        self.check_online(now, out);
    }

    fn complete_launch(&mut self, out: &mut Output) {
        if self.policy.launch_hook && !self.launch_requested {
            self.launch_requested = true;
            out.actions.push(Action::CompleteLaunch);
        }
    }

    fn take_metrics(&mut self, now: Instant) -> MetricsBatch {
        MetricsBatch {
            inbound_packets: self.packets_sum.take(),
            players_online: self.players,
            idle_seconds: self.idle_for(now).as_secs_f64(),
            container_running: self.container_running,
            wake: self.wake_unpublished.take(),
        }
    }

    fn done(&mut self, c: Completion, now: Instant, out: &mut Output) {
        let set = |step: &mut Step| {
            if *step == Step::Running {
                *step = Step::Done;
            }
        };
        match c {
            Completion::DnsUpdated => {
                self.dns_pointed = true;
                self.check_online(now, out);
            }
            Completion::ScaledIn => {
                if let Some(s) = self.scale_in.as_mut() {
                    s.done_at = Some(now);
                }
                // If the group keeps us (the wake-up path set the capacity back to 1), give
                // the players a whole new idle window before trying again; that is a new wake,
                // with a new `unused_after` window.
                self.last_active = now;
                if self.ready_at.is_some() {
                    self.ready_at = Some(now);
                }
                self.end_streak();
            }
            Completion::GracefulStopDone { saved } => {
                if let Some(d) = self.drain.as_mut() {
                    set(&mut d.stop);
                    d.saved = saved;
                }
            }
            Completion::DnsReverted => {
                if let Some(d) = self.drain.as_mut() {
                    set(&mut d.dns);
                }
            }
            Completion::MetricsFlushed => {
                if let Some(d) = self.drain.as_mut() {
                    set(&mut d.flush);
                }
            }
            Completion::MetricsPublished { failed, permanent } => {
                let Some(error) = failed else {
                    self.metrics_failures = 0;
                    self.metrics_told = false;
                    return;
                };
                self.metrics_failures = self.metrics_failures.saturating_add(1);
                if !permanent
                    && self.metrics_failures >= METRICS_STUCK_AFTER
                    && !std::mem::replace(&mut self.metrics_told, true)
                {
                    out.actions
                        .push(Action::Alert(Alert::NeedsOperator(Problem::MetricsStuck {
                            failures: self.metrics_failures,
                            error,
                        })));
                }
            }
            Completion::LifecycleCompleted => {
                if let Some(d) = self.drain.as_mut() {
                    set(&mut d.lifecycle);
                }
            }
            Completion::Prepared => self.complete_launch(out),
            Completion::LaunchCompleted => {}
            Completion::WakeRecorded { unused_today } => {
                if let (Some(wakes), Some(budget)) = (unused_today, self.policy.wake_budget)
                    && wakes >= budget
                    && !std::mem::replace(&mut self.budget_told, true)
                {
                    out.actions.push(Action::Alert(Alert::NeedsOperator(
                        Problem::WakeBudgetSpent { wakes, budget },
                    )));
                }
            }
            Completion::StartDiagnosed { why, known } => {
                if self.start_check != Step::Running {
                    return;
                }
                self.start_check = Step::Done;
                // A container may have started while the Docker API was asked (then it is
                // starting, not failed); a game that answers the probe runs whatever Docker
                // says; and a Docker API that cannot be asked tells nothing (rule 4's spirit:
                // not knowing never stops the game; `no_docker` tells the operator).
                if !known
                    || self.ever_ran
                    || self.game_ready
                    || self.drain.is_some()
                    || self.warmed()
                {
                    return;
                }
                let waited = self
                    .served_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                self.never_started(StartFailure::NoContainer { waited, why }, out);
            }
            Completion::Stuck(problem) => {
                // A refused call is told once per fix, however often it is retried or made
                // again (metrics every minute, a note at every wake).
                if let Problem::Refused { fix, .. } = &problem {
                    if self.refused_told.contains(fix) {
                        return;
                    }
                    self.refused_told.push(fix.clone());
                }
                out.actions
                    .push(Action::Alert(Alert::NeedsOperator(problem)));
            }
        }
    }

    fn timers(&mut self, now: Instant, out: &mut Output) {
        if self.drain.is_some() {
            return;
        }
        // A scale-in the group did not act on (the capacity was set back to 1) may be retried
        // after a fresh idle window.
        if let Some(ScaleIn { done_at: Some(t) }) = self.scale_in
            && now.saturating_duration_since(t) >= self.policy.idle_after
        {
            self.scale_in = None;
            if self.policy.stop_on_max_uptime {
                self.max_uptime_fired = false;
            }
        }
        if let Some(since) = self.running_since
            && now.saturating_duration_since(since) >= CRASH_STREAK_RESET
            && self.crash_streak > 0
        {
            self.end_streak();
        }
        if let Some(due) = self.start_deadline()
            && now >= due
        {
            self.start_check = Step::Running;
            out.actions.push(Action::DiagnoseStart {
                waited: now.saturating_duration_since(self.served_at.unwrap_or(now)),
            });
        }
        if let Some(due) = self.backstop_due()
            && now >= due
        {
            let uptime = now.saturating_duration_since(self.booted);
            let unconfirmed_for = now.saturating_duration_since(self.last_confirmed);
            self.max_uptime_fired = true;
            self.max_uptime_alerted = true;
            self.request_scale_in(
                ScaleReason::MaxUptime {
                    uptime,
                    unconfirmed_for: Some(unconfirmed_for),
                },
                out,
            );
            if !std::mem::replace(&mut self.backstop_alerted, true) {
                out.actions.push(Action::Alert(Alert::MaxUptime {
                    uptime,
                    scaling_in: true,
                    unconfirmed_for: Some(unconfirmed_for),
                }));
            }
        }
        // With the backstop armed, the alert-only message waits for a confirmed player (the
        // backstop tells its own stop otherwise).
        if let Some(max) = self.policy.max_uptime
            && !self.max_uptime_fired
            && !self.warmed()
            && (self.confirmed_seen || self.backstop_due().is_none())
        {
            let uptime = now.saturating_duration_since(self.booted);
            if uptime >= max {
                self.max_uptime_fired = true;
                let scaling_in = self.policy.stop_on_max_uptime
                    && self.policy.scaling
                    && self.scale_in.is_none();
                if scaling_in {
                    self.request_scale_in(
                        ScaleReason::MaxUptime {
                            uptime,
                            unconfirmed_for: None,
                        },
                        out,
                    );
                }
                if !self.max_uptime_alerted {
                    self.max_uptime_alerted = true;
                    out.actions.push(Action::Alert(Alert::MaxUptime {
                        uptime,
                        scaling_in,
                        unconfirmed_for: None,
                    }));
                }
            }
        }
        if let Some(next) = self.next_metrics
            && now >= next
            && let Some(interval) = self.policy.metrics_interval
        {
            let batch = self.take_metrics(now);
            out.actions.push(Action::PublishMetrics {
                batch,
                flush: false,
            });
            // Skip missed intervals rather than bursting.
            let mut n = next + interval;
            while n <= now {
                n += interval;
            }
            self.next_metrics = Some(n);
        }
    }
}

#[cfg(test)]
mod tests;
