//! Table tests and property tests of the decision core.

use super::*;
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

fn policy() -> Policy {
    Policy {
        min_packets_per_second: 2.0,
        sample_interval: 10 * S,
        idle_after: 60 * S,
        boot_grace: Duration::ZERO,
        crashes_before_shutdown: 1,
        max_uptime: Some(8 * 3600 * S),
        stop_on_max_uptime: false,
        max_uptime_backstop: false,
        scaling: true,
        lifecycle_hook: true,
        dns: true,
        metrics_interval: Some(60 * S),
        launch_hook: false,
        prepare_image: false,
        ready_when: Readiness::ProbeAnswers,
        start_within: None,
        unused_after: None,
        wake_budget: None,
    }
}

fn packets(total: u64) -> Observation {
    Observation {
        interval: 10 * S,
        packets: PacketReading::Known {
            total,
            by_port: vec![("udp:2456-2458".into(), total)],
        },
        probe: None,
        keep_awake: Some(false),
    }
}

fn quiet() -> Observation {
    packets(0)
}

fn busy() -> Observation {
    packets(500)
}

fn unknown() -> Observation {
    Observation {
        packets: PacketReading::Unknown {
            reason: "socket failed".into(),
        },
        ..quiet()
    }
}

fn with_probe(mut o: Observation, p: ProbeReading) -> Observation {
    o.probe = Some(p);
    o
}

fn players(n: u32) -> ProbeReading {
    ProbeReading::Players { online: n, max: 10 }
}

fn probe_err() -> ProbeReading {
    ProbeReading::Failed {
        error: "timeout".into(),
    }
}

/// A test driver: a core and a clock that only moves forward.
struct Rig {
    core: Core,
    now: Instant,
    t0: Instant,
    log: Vec<(Duration, Action)>,
}

impl Rig {
    fn new(p: Policy) -> Self {
        Self::with_uptime(p, Duration::from_secs(3600))
    }

    fn with_uptime(p: Policy, uptime: Duration) -> Self {
        let now = Instant::now();
        Self {
            core: Core::new(p, now, uptime),
            now,
            t0: now,
            log: vec![],
        }
    }

    fn at(&mut self, dt: Duration, input: Input) -> Vec<Action> {
        self.now += dt;
        let out = self.core.handle(input, self.now);
        let at = self.now - self.t0;
        self.log
            .extend(out.actions.iter().cloned().map(|a| (at, a)));
        out.actions
    }

    fn sample(&mut self, o: Observation) -> Vec<Action> {
        self.at(10 * S, Input::Observation(o))
    }

    fn scale_ins(&self) -> Vec<&ScaleReason> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::ScaleToZero(r, _) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn alerts(&self) -> Vec<&Alert> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Alert(al) => Some(al),
                _ => None,
            })
            .collect()
    }
}

fn is_idle_scale(a: &Action) -> bool {
    matches!(a, Action::ScaleToZero(ScaleReason::Idle { .. }, _))
}

#[test]
fn quiet_for_idle_after_scales_in_once_with_one_alert() {
    let mut r = Rig::new(policy());
    for i in 1..=5 {
        let a = r.sample(quiet());
        assert!(a.is_empty(), "sample {i} at {}s: {a:?}", i * 10);
    }
    let a = r.sample(quiet()); // 60 s quiet
    assert!(a.iter().any(is_idle_scale), "{a:?}");
    // The idle stop is told once the game is saved, not when the scale-in is asked for.
    assert!(!a.iter().any(|x| matches!(x, Action::Alert(_))), "{a:?}");
    for _ in 0..10 {
        let a = r.sample(quiet());
        assert!(!a.iter().any(is_idle_scale), "scale-in repeated: {a:?}");
    }
    assert_eq!(r.scale_ins().len(), 1);
    assert!(r.alerts().is_empty(), "{:?}", r.alerts());
    // The group terminates the instance: the game saves, then the idle stop is told with the
    // save's outcome, once, before the lifecycle action is completed.
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(
        r.alerts().is_empty(),
        "not before the save: {:?}",
        r.alerts()
    );
    let a = r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    match a.as_slice() {
        [
            Action::Alert(Alert::IdleStop {
                idle_for,
                uptime,
                saved: Some(true),
                unused: false,
            }),
            Action::PublishMetrics { flush: true, .. },
        ] => {
            assert_eq!(*idle_for, 60 * S);
            assert!(*uptime > 3600 * S, "{uptime:?}");
        }
        other => panic!("{other:?}"),
    }
    r.at(S, Input::Done(Completion::DnsReverted));
    r.at(S, Input::Done(Completion::MetricsFlushed));
    r.at(S, Input::Done(Completion::LifecycleCompleted));
    assert!(r.core.finished());
    assert_eq!(r.alerts().len(), 1);
}

#[test]
fn an_unsaved_idle_stop_says_so() {
    let mut r = Rig::new(policy());
    for _ in 0..6 {
        r.sample(quiet());
    }
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    let a = r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(false) }),
    );
    assert!(
        matches!(
            a.first(),
            Some(Action::Alert(Alert::IdleStop {
                saved: Some(false),
                ..
            }))
        ),
        "{a:?}"
    );
}

#[test]
fn a_termination_nobody_asked_for_tells_no_idle_stop() {
    let mut r = Rig::new(policy());
    r.sample(quiet());
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    assert!(r.alerts().is_empty(), "{:?}", r.alerts());
}

fn online_count(r: &Rig) -> usize {
    r.alerts()
        .iter()
        .filter(|a| matches!(a, Alert::Online { .. }))
        .count()
}

#[test]
fn online_waits_for_the_record_and_the_first_probe_answer_and_comes_once() {
    let mut r = Rig::with_uptime(policy(), 20 * S);
    assert_eq!(
        r.at(S, Input::Lifecycle(LifecycleState::InService)),
        vec![Action::UpdateDns]
    );
    // The game answers before DNS is in sync: not yet.
    assert!(r.sample(with_probe(quiet(), players(0))).is_empty());
    let a = r.at(S, Input::Done(Completion::DnsUpdated));
    match a.as_slice() {
        [Action::Alert(Alert::Online { uptime })] => assert_eq!(*uptime, 32 * S),
        other => panic!("{other:?}"),
    }
    r.sample(with_probe(quiet(), players(0)));
    r.at(S, Input::Done(Completion::DnsUpdated));
    assert_eq!(online_count(&r), 1);
}

#[test]
fn online_is_not_told_while_the_probe_fails_or_in_the_warm_pool() {
    let mut r = Rig::new(policy());
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.at(S, Input::Done(Completion::DnsUpdated));
    r.sample(with_probe(quiet(), probe_err()));
    assert_eq!(online_count(&r), 0);

    let mut r = Rig::new(Policy {
        ready_when: Readiness::ContainerRuns,
        ..pool_policy()
    });
    r.at(
        S,
        Input::Lifecycle(LifecycleState::Warmed("Warmed:Pending:Wait".into())),
    );
    r.at(
        S,
        Input::Container(ContainerEvent::Running {
            id: "c1".into(),
            name: "game".into(),
        }),
    );
    assert_eq!(online_count(&r), 0);
}

#[test]
fn online_without_a_probe_follows_the_container() {
    let mut r = Rig::new(Policy {
        ready_when: Readiness::ContainerRuns,
        ..policy()
    });
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.at(S, Input::Done(Completion::DnsUpdated));
    assert_eq!(online_count(&r), 0);
    r.at(
        S,
        Input::Container(ContainerEvent::Running {
            id: "c1".into(),
            name: "game".into(),
        }),
    );
    assert_eq!(online_count(&r), 1);
}

#[test]
fn players_are_told_on_changes_after_online_only() {
    let mut r = Rig::new(policy());
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.sample(with_probe(busy(), players(2))); // before online: the baseline
    r.at(S, Input::Done(Completion::DnsUpdated)); // online
    r.sample(with_probe(busy(), players(2)));
    r.sample(with_probe(busy(), probe_err()));
    r.sample(with_probe(busy(), players(3)));
    r.sample(with_probe(busy(), players(3)));
    r.sample(with_probe(quiet(), players(0)));
    let told: Vec<u32> = r
        .alerts()
        .iter()
        .filter_map(|a| match a {
            Alert::Players { online, .. } => Some(*online),
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![3, 0]);
}

#[test]
fn a_stuck_dns_update_or_scale_in_needs_an_operator() {
    let mut r = Rig::new(policy());
    for problem in [
        Problem::DnsStuck {
            error: "AccessDenied".into(),
        },
        Problem::ScaleInStuck {
            error: "AccessDenied".into(),
        },
    ] {
        let a = r.at(S, Input::Done(Completion::Stuck(problem.clone())));
        assert_eq!(a, vec![Action::Alert(Alert::NeedsOperator(problem))]);
    }
}

#[test]
fn verdict_counts_down() {
    let mut r = Rig::new(policy());
    r.now += 10 * S;
    let out = r.core.handle(Input::Observation(quiet()), r.now);
    let v = out.verdict.unwrap();
    assert!(!v.active);
    assert_eq!(v.idle_for, 10 * S);
    assert_eq!(v.remaining, Some(50 * S));
}

#[test]
fn activity_resets_the_window() {
    let mut r = Rig::new(policy());
    for _ in 0..5 {
        r.sample(quiet());
    }
    r.sample(busy());
    for _ in 0..5 {
        assert!(!r.sample(quiet()).iter().any(is_idle_scale));
    }
    assert!(r.sample(quiet()).iter().any(is_idle_scale));
}

#[test]
fn rate_threshold_is_per_second() {
    // 19 packets in 10 s is 1.9/s, below 2.0: quiet. 20 is exactly 2.0: active.
    assert!(!classify(&packets(19), 2.0).0);
    assert!(classify(&packets(20), 2.0).0);
    // With a zero threshold a single packet counts, and silence does not.
    assert!(classify(&packets(1), 0.0).0);
    assert!(!classify(&packets(0), 0.0).0);
}

#[test]
fn boot_grace_is_honoured() {
    let mut p = policy();
    p.boot_grace = 600 * S;
    let mut r = Rig::with_uptime(p, Duration::ZERO);
    for i in 1..60 {
        let a = r.sample(quiet());
        assert!(!a.iter().any(is_idle_scale), "at {} s", i * 10);
    }
    assert!(r.sample(quiet()).iter().any(is_idle_scale), "at 600 s");
}

#[test]
fn probe_player_count_decides_over_packets() {
    // Players online with no traffic at all: active.
    assert!(classify(&with_probe(quiet(), players(2)), 2.0).0);
    // Zero players while noise traffic flows: quiet.
    assert!(!classify(&with_probe(busy(), players(0)), 2.0).0);
    let mut r = Rig::new(policy());
    for _ in 0..20 {
        assert!(
            !r.sample(with_probe(quiet(), players(2)))
                .iter()
                .any(is_idle_scale)
        );
    }
    for _ in 0..5 {
        assert!(
            !r.sample(with_probe(busy(), players(0)))
                .iter()
                .any(is_idle_scale)
        );
    }
    assert!(
        r.sample(with_probe(busy(), players(0)))
            .iter()
            .any(is_idle_scale)
    );
}

#[test]
fn probe_errors_fall_back_to_packets_then_to_active() {
    assert!(classify(&with_probe(busy(), probe_err()), 2.0).0);
    assert!(!classify(&with_probe(quiet(), probe_err()), 2.0).0);
    assert!(classify(&with_probe(unknown(), probe_err()), 2.0).0);
    let mut r = Rig::new(policy());
    for _ in 0..100 {
        r.sample(with_probe(unknown(), probe_err()));
    }
    assert!(r.scale_ins().is_empty());
}

#[test]
fn unknown_samples_never_idle() {
    let mut r = Rig::new(policy());
    for _ in 0..100 {
        r.sample(unknown());
    }
    assert!(r.scale_ins().is_empty());
    assert!(r.alerts().is_empty());
}

#[test]
fn keep_awake_wins() {
    let mut r = Rig::new(policy());
    for _ in 0..100 {
        let mut o = with_probe(quiet(), players(0));
        o.keep_awake = Some(true);
        r.sample(o);
    }
    assert!(r.scale_ins().is_empty());
}

#[test]
fn a_gap_in_samples_counts_as_active() {
    let mut r = Rig::new(policy());
    for _ in 0..5 {
        r.sample(quiet());
    }
    // The sampler stalled for 5 minutes; the next quiet sample must not idle at once.
    let a = r.at(300 * S, Input::Observation(quiet()));
    assert!(!a.iter().any(is_idle_scale), "{a:?}");
    for _ in 0..5 {
        assert!(!r.sample(quiet()).iter().any(is_idle_scale));
    }
    assert!(r.sample(quiet()).iter().any(is_idle_scale));
}

fn exited(code: i64, requested: bool, oom: bool) -> Input {
    Input::Container(ContainerEvent::Exited {
        id: "abc".into(),
        name: "game".into(),
        exit_code: code,
        requested,
        oom_killed: oom,
        log_tail: vec!["panic: out of cheese".into()],
    })
}

fn running() -> Input {
    Input::Container(ContainerEvent::Running {
        id: "abc".into(),
        name: "game".into(),
    })
}

#[test]
fn a_crash_scales_in_with_one_alert_carrying_the_logs() {
    let mut r = Rig::new(policy());
    r.at(S, running());
    r.sample(with_probe(quiet(), players(0))); // the game is up: exits are crashes now
    let a = r.at(S, exited(3, false, false));
    assert!(
        matches!(
            a.as_slice(),
            [Action::ScaleToZero(ScaleReason::Crash { exit_code: 3, .. }, _), Action::Alert(Alert::Crash { exit_code: 3, log_tail, scaling_in: true, .. })]
                if log_tail == &vec!["panic: out of cheese".to_string()]
        ),
        "{a:?}"
    );
    // ECS restarts it and it crashes again: no second alert in the same streak.
    r.at(S, running());
    assert!(r.at(S, exited(3, false, false)).is_empty());
}

/// The stop's record keeps the players the probe last counted and the uptime, for `status`.
#[test]
fn a_stop_keeps_the_players_last_counted_and_the_uptime() {
    let mut r = Rig::with_uptime(policy(), 20 * 60 * S);
    r.at(S, running());
    r.sample(with_probe(quiet(), players(3))); // 10 s later
    let a = r.at(S, exited(3, false, false));
    assert!(
        matches!(
            a.first(),
            Some(Action::ScaleToZero(
                ScaleReason::Crash { .. },
                StopFacts { players: Some(3), up_for }
            )) if *up_for == 20 * 60 * S + 12 * S
        ),
        "{a:?}"
    );
    // Without any answer from the probe (the game exits before it is up), the players are
    // unknown.
    let mut unknown = Rig::with_uptime(policy(), 60 * S);
    unknown.at(S, running());
    let a = unknown.at(S, exited(3, false, false));
    assert!(
        matches!(
            a.first(),
            Some(Action::ScaleToZero(
                ScaleReason::NeverStarted(_),
                StopFacts { players: None, up_for }
            )) if *up_for == 62 * S
        ),
        "{a:?}"
    );
}

#[test]
fn crash_streaks_need_n_in_a_row() {
    let mut p = policy();
    p.crashes_before_shutdown = 3;
    let mut r = Rig::new(p);
    r.sample(with_probe(quiet(), players(0)));
    assert!(r.at(S, exited(1, false, false)).is_empty());
    assert!(r.at(S, exited(1, false, false)).is_empty());
    // A clean exit that nobody asked for ends the streak.
    assert!(r.at(S, exited(0, false, false)).is_empty());
    assert!(r.at(S, exited(1, false, false)).is_empty());
    assert!(r.at(S, exited(1, false, false)).is_empty());
    let a = r.at(S, exited(1, false, false));
    assert!(
        matches!(
            a.first(),
            Some(Action::ScaleToZero(
                ScaleReason::Crash { crashes: 3, .. },
                _
            ))
        ),
        "{a:?}"
    );
}

#[test]
fn a_long_healthy_run_ends_the_streak() {
    let mut p = policy();
    p.crashes_before_shutdown = 2;
    let mut r = Rig::new(p);
    r.sample(with_probe(quiet(), players(0)));
    r.at(S, exited(1, false, false));
    r.at(S, running());
    r.at(CRASH_STREAK_RESET + S, Input::Tick);
    assert!(
        r.at(S, exited(1, false, false)).is_empty(),
        "streak should have reset"
    );
}

#[test]
fn requested_and_terminating_exits_are_not_crashes() {
    let mut r = Rig::new(policy());
    // docker stop of a container that ignores SIGTERM: 137, requested.
    assert!(r.at(S, exited(137, true, false)).is_empty());
    assert!(!r.core.is_crash(137, true, false));
    assert!(r.core.is_crash(137, false, false));
    assert!(
        r.core.is_crash(0, false, true),
        "an OOM kill is a crash even with code 0"
    );
    assert!(!r.core.is_crash(0, false, false));
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(!r.core.is_crash(3, false, false));
    let a = r.at(S, exited(3, false, false));
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::ScaleToZero(..) | Action::Alert(_))),
        "{a:?}"
    );
}

fn start_policy(within: u64) -> Policy {
    Policy {
        start_within: Some(Duration::from_secs(within)),
        metrics_interval: None,
        ..policy()
    }
}

fn never_started_alerts(r: &Rig) -> Vec<&StartFailure> {
    r.alerts()
        .into_iter()
        .filter_map(|a| match a {
            Alert::NeverStarted { failure, .. } => Some(failure),
            _ => None,
        })
        .collect()
}

fn diagnose_requests(r: &Rig) -> usize {
    r.log
        .iter()
        .filter(|(_, a)| matches!(a, Action::DiagnoseStart { .. }))
        .count()
}

#[test]
fn no_container_within_start_within_asks_docker_then_alerts_once_and_scales_in() {
    let mut r = Rig::new(start_policy(120));
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    // The deadline counts from going into service, and the core asks to be woken for it.
    assert_eq!(r.core.next_wake().map(|t| t - r.now), Some(120 * S));
    assert!(r.at(119 * S, Input::Tick).is_empty());
    let a = r.at(S, Input::Tick);
    assert!(
        matches!(a.as_slice(), [Action::DiagnoseStart { waited }] if *waited == 120 * S),
        "{a:?}"
    );
    assert!(r.at(10 * S, Input::Tick).is_empty(), "asked once");
    let why = "the image example/game:1 cannot be pulled: connection refused".to_string();
    let a = r.at(
        S,
        Input::Done(Completion::StartDiagnosed {
            why: why.clone(),
            known: true,
        }),
    );
    assert!(
        matches!(
            a.as_slice(),
            [
                Action::ScaleToZero(ScaleReason::NeverStarted(StartFailure::NoContainer { .. }), _),
                Action::Alert(Alert::NeverStarted { failure: StartFailure::NoContainer { why: w, waited }, scaling_in: true })
            ] if *w == why && *waited == 131 * S
        ),
        "{a:?}"
    );
    // The scale-in ends in a termination: the drain reverts DNS as for every stop.
    let a = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(a.contains(&Action::RevertDns), "{a:?}");
    r.at(3600 * S, Input::Tick);
    assert_eq!(never_started_alerts(&r).len(), 1);
}

#[test]
fn a_container_that_runs_is_starting_however_long_it_takes_to_answer() {
    let mut r = Rig::new(start_policy(60));
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.at(30 * S, running());
    // Loading for an hour without answering the probe: not never_started.
    for _ in 0..360 {
        r.sample(with_probe(quiet(), probe_err()));
    }
    assert_eq!(diagnose_requests(&r), 0);
    assert!(never_started_alerts(&r).is_empty());
}

#[test]
fn a_diagnosis_that_comes_after_the_container_started_or_that_is_unknown_stops_nothing() {
    for (late_start, known) in [(true, true), (false, false)] {
        let mut r = Rig::new(start_policy(60));
        r.at(S, Input::Lifecycle(LifecycleState::InService));
        r.at(60 * S, Input::Tick);
        assert_eq!(diagnose_requests(&r), 1);
        if late_start {
            r.at(S, running());
        }
        let a = r.at(
            S,
            Input::Done(Completion::StartDiagnosed {
                why: "Docker could not be asked".into(),
                known,
            }),
        );
        assert!(a.is_empty(), "{a:?}");
        assert!(r.scale_ins().is_empty() && never_started_alerts(&r).is_empty());
        assert_eq!(
            r.core.next_wake().map(|t| t > r.now),
            Some(true),
            "no busy wake-ups"
        );
    }
}

#[test]
fn start_within_does_not_run_in_the_warm_pool_nor_when_off() {
    let mut r = Rig::new(Policy {
        start_within: Some(60 * S),
        ..pool_policy()
    });
    r.at(
        S,
        Input::Lifecycle(LifecycleState::Warmed("Warmed:Pending".into())),
    );
    r.at(3600 * S, Input::Tick);
    assert_eq!(diagnose_requests(&r), 0);
    let mut r = Rig::new(policy());
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.at(3600 * S, Input::Tick);
    assert_eq!(diagnose_requests(&r), 0);
}

#[test]
fn an_exit_before_the_game_was_ever_up_is_never_started_with_its_exit_code() {
    let mut r = Rig::new(start_policy(600));
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.at(S, running());
    let a = r.at(S, exited(2, false, false));
    assert!(
        matches!(
            a.as_slice(),
            [
                Action::ScaleToZero(ScaleReason::NeverStarted(_), _),
                Action::Alert(Alert::NeverStarted { failure: StartFailure::Exited { exit_code: 2, log_tail, .. }, scaling_in: true })
            ] if log_tail == &vec!["panic: out of cheese".to_string()]
        ),
        "{a:?}"
    );
    assert!(
        !r.alerts().iter().any(|a| matches!(a, Alert::Crash { .. })),
        "one alert, not two"
    );
    // Without a probe a running container is the game being up: its exits stay crashes.
    let mut r = Rig::new(Policy {
        ready_when: Readiness::ContainerRuns,
        ..start_policy(600)
    });
    r.at(S, running());
    let a = r.at(S, exited(2, false, false));
    assert!(
        matches!(
            a.as_slice(),
            [
                Action::ScaleToZero(ScaleReason::Crash { .. }, _),
                Action::Alert(Alert::Crash { .. })
            ]
        ),
        "{a:?}"
    );
}

fn unused_policy(after: u64) -> Policy {
    Policy {
        unused_after: Some(Duration::from_secs(after)),
        boot_grace: 600 * S,
        idle_after: 420 * S,
        metrics_interval: None,
        ..policy()
    }
}

fn unused_scale_ins(r: &Rig) -> Vec<Duration> {
    r.scale_ins()
        .into_iter()
        .filter_map(|s| match s {
            ScaleReason::Unused { up_for } => Some(*up_for),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wake_nobody_came_to_ends_unused_after_the_game_is_up_despite_boot_grace() {
    let mut r = Rig::new(unused_policy(120));
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.at(S, Input::Done(Completion::DnsUpdated));
    // Booting: the probe does not answer yet; this time does not count.
    for _ in 0..6 {
        r.sample(with_probe(quiet(), probe_err()));
    }
    assert!(r.scale_ins().is_empty());
    // Up at the first answer (0 players); 12 more quiet samples of 10 s are 120 s.
    for _ in 0..12 {
        r.sample(with_probe(quiet(), players(0)));
        assert!(r.scale_ins().is_empty(), "too early");
    }
    r.sample(with_probe(quiet(), players(0)));
    assert_eq!(unused_scale_ins(&r), vec![120 * S]);
    // Told after the save, as nobody came.
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    assert!(
        r.alerts().iter().any(
            |a| matches!(a, Alert::IdleStop { unused: true, idle_for, .. } if *idle_for == 120 * S)
        ),
        "{:?}",
        r.alerts()
    );
}

#[test]
fn a_wake_with_a_player_is_never_ended_by_unused_after() {
    let mut r = Rig::new(unused_policy(60));
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.sample(with_probe(quiet(), players(0)));
    r.sample(with_probe(quiet(), players(1))); // someone came and left at once
    for _ in 0..45 {
        r.sample(with_probe(quiet(), players(0)));
    }
    assert!(unused_scale_ins(&r).is_empty());
    // Only the idle rule ends it (boot_grace 600 s, idle_after 420 s).
    assert!(
        matches!(r.scale_ins().as_slice(), [ScaleReason::Idle { .. }]),
        "{:?}",
        r.scale_ins()
    );
}

fn record_wakes(r: &Rig) -> Vec<bool> {
    r.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::RecordWake { joined } => Some(*joined),
            _ => None,
        })
        .collect()
}

#[test]
fn the_ledger_hears_each_wake_once_and_the_operator_once_when_the_budget_is_spent() {
    // A wake nobody joined: recorded with the scale-in; at the budget, one needs_operator.
    let mut r = Rig::new(Policy {
        wake_budget: Some(3),
        ..unused_policy(60)
    });
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    for _ in 0..8 {
        r.sample(with_probe(quiet(), players(0)));
    }
    assert_eq!(record_wakes(&r), vec![false]);
    for n in [2, 3, 3] {
        r.at(
            S,
            Input::Done(Completion::WakeRecorded {
                unused_today: Some(n),
            }),
        );
    }
    let told: Vec<_> = r
        .alerts()
        .into_iter()
        .filter(|a| {
            matches!(
                a,
                Alert::NeedsOperator(Problem::WakeBudgetSpent {
                    wakes: 3,
                    budget: 3
                })
            )
        })
        .collect();
    assert_eq!(told.len(), 1, "{:?}", r.alerts());

    // A wake someone joined: cleared once, at the first active sample after the game is up.
    let mut r = Rig::new(Policy {
        wake_budget: Some(3),
        ..unused_policy(60)
    });
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.sample(with_probe(busy(), probe_err())); // before it is up: players waiting, not counted
    assert!(record_wakes(&r).is_empty());
    r.sample(with_probe(quiet(), players(0)));
    r.sample(with_probe(quiet(), players(2)));
    r.sample(with_probe(busy(), players(3)));
    assert_eq!(record_wakes(&r), vec![true]);
    // Without a budget there is no ledger.
    let mut r = Rig::new(unused_policy(60));
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.sample(with_probe(quiet(), players(0)));
    r.sample(with_probe(quiet(), players(1)));
    assert!(record_wakes(&r).is_empty());
}

#[test]
fn an_unknown_count_or_the_keep_awake_file_keeps_an_unused_wake_up() {
    for o in [
        unknown(),
        Observation {
            keep_awake: Some(true),
            ..quiet()
        },
    ] {
        let mut p = unused_policy(60);
        p.ready_when = Readiness::ContainerRuns;
        let mut r = Rig::new(p);
        r.at(S, Input::Lifecycle(LifecycleState::InService));
        r.at(S, running());
        r.sample(o.clone());
        for _ in 0..30 {
            r.sample(quiet());
        }
        assert!(unused_scale_ins(&r).is_empty(), "{o:?}");
    }
}

#[test]
fn max_uptime_alerts_once_and_scales_in_only_when_asked() {
    for stop in [false, true] {
        let mut p = policy();
        p.stop_on_max_uptime = stop;
        p.metrics_interval = None;
        let mut r = Rig::with_uptime(p, Duration::ZERO);
        let wake = r.core.next_wake().unwrap();
        assert_eq!(wake - r.t0, 8 * 3600 * S);
        r.at(8 * 3600 * S - S, Input::Tick);
        assert!(r.alerts().is_empty());
        r.at(S, Input::Tick);
        for _ in 0..100 {
            r.at(600 * S, Input::Tick);
        }
        let alerts: Vec<_> = r
            .alerts()
            .into_iter()
            .filter(|a| matches!(a, Alert::MaxUptime { .. }))
            .collect();
        assert_eq!(alerts.len(), 1, "stop={stop}");
        let scale_ins = r.scale_ins().len();
        if stop {
            assert_eq!(scale_ins, 1);
        } else {
            assert_eq!(scale_ins, 0);
        }
    }
}

#[test]
fn termination_reverts_dns_while_the_game_saves_then_flushes_then_completes_then_exits() {
    let mut r = Rig::new(policy());
    let a = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert_eq!(
        a,
        vec![
            Action::GracefulStop {
                cause: DrainCause::Terminating,
                heartbeat: true
            },
            Action::RecordWakeOutcome(WakeOutcome {
                joined: false,
                up_for: 3601 * S,
            }),
            Action::RevertDns
        ]
    );
    assert!(
        r.at(S, Input::Tick).is_empty(),
        "nothing while the stop runs"
    );
    assert!(r.at(S, Input::Done(Completion::DnsReverted)).is_empty());
    let a = r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    assert!(
        matches!(a.as_slice(), [Action::PublishMetrics { flush: true, .. }]),
        "{a:?}"
    );
    let a = r.at(S, Input::Done(Completion::MetricsFlushed));
    assert_eq!(a, vec![Action::CompleteLifecycle]);
    assert!(!r.core.finished());
    let a = r.at(S, Input::Done(Completion::LifecycleCompleted));
    assert_eq!(a, vec![Action::Exit]);
    assert!(r.core.finished());
    assert_eq!(r.core.next_wake(), None);
}

#[test]
fn the_lifecycle_waits_for_the_save_even_when_dns_is_done_first() {
    let mut r = Rig::new(policy());
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(r.at(S, Input::Done(Completion::DnsReverted)).is_empty());
    assert!(
        r.at(S, Input::Tick).is_empty(),
        "no completion while the game saves"
    );
    let a = r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    assert!(!a.contains(&Action::CompleteLifecycle), "{a:?}");
}

#[test]
fn spot_notice_stops_at_once_and_termination_completes_later() {
    let mut r = Rig::new(policy());
    let a = r.at(S, Input::SpotInterruption);
    assert_eq!(
        a,
        vec![
            Action::GracefulStop {
                cause: DrainCause::SpotInterruption,
                heartbeat: false
            },
            Action::RecordWakeOutcome(WakeOutcome {
                joined: false,
                up_for: 3601 * S,
            }),
            Action::RevertDns
        ]
    );
    assert!(
        r.at(
            S,
            Input::Done(Completion::GracefulStopDone { saved: Some(true) })
        )
        .is_empty()
    );
    assert!(r.at(S, Input::Done(Completion::DnsReverted)).is_empty());
    assert!(
        !r.core.finished(),
        "a Spot notice alone does not end the agent"
    );
    let a = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(
        matches!(a.as_slice(), [Action::PublishMetrics { flush: true, .. }]),
        "{a:?}"
    );
    let a = r.at(S, Input::Done(Completion::MetricsFlushed));
    assert_eq!(a, vec![Action::CompleteLifecycle]);
    assert_eq!(
        r.at(S, Input::Done(Completion::LifecycleCompleted)),
        vec![Action::Exit]
    );
    let stops = r
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::GracefulStop { .. }))
        .count();
    assert_eq!(stops, 1, "the game is stopped once");
}

#[test]
fn agent_stop_alone_leaves_the_game_and_dns_alone() {
    let mut r = Rig::new(policy());
    let a = r.at(
        S,
        Input::Shutdown {
            system_stopping: false,
        },
    );
    assert!(
        matches!(a.as_slice(), [Action::PublishMetrics { flush: true, .. }]),
        "{a:?}"
    );
    assert_eq!(
        r.at(S, Input::Done(Completion::MetricsFlushed)),
        vec![Action::Exit]
    );
}

#[test]
fn system_shutdown_saves_and_reverts_without_lifecycle() {
    let mut r = Rig::new(policy());
    let a = r.at(
        S,
        Input::Shutdown {
            system_stopping: true,
        },
    );
    assert_eq!(
        a,
        vec![
            Action::GracefulStop {
                cause: DrainCause::SystemShutdown,
                heartbeat: false
            },
            Action::RecordWakeOutcome(WakeOutcome {
                joined: false,
                up_for: 3601 * S,
            }),
            Action::RevertDns
        ]
    );
    let a = r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    assert!(
        matches!(a.as_slice(), [Action::PublishMetrics { flush: true, .. }]),
        "{a:?}"
    );
    r.at(S, Input::Done(Completion::DnsReverted));
    assert_eq!(
        r.at(S, Input::Done(Completion::MetricsFlushed)),
        vec![Action::Exit]
    );
}

#[test]
fn without_dns_metrics_or_hook_termination_is_stop_then_exit() {
    let mut p = policy();
    p.dns = false;
    p.metrics_interval = None;
    p.lifecycle_hook = false;
    let mut r = Rig::new(p);
    let a = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert_eq!(
        a,
        vec![
            Action::GracefulStop {
                cause: DrainCause::Terminating,
                heartbeat: false
            },
            Action::RecordWakeOutcome(WakeOutcome {
                joined: false,
                up_for: 3601 * S,
            }),
        ]
    );
    assert_eq!(
        r.at(
            S,
            Input::Done(Completion::GracefulStopDone { saved: Some(true) })
        ),
        vec![Action::Exit]
    );
}

#[test]
fn dns_is_updated_once_in_service_and_never_while_warmed() {
    let mut r = Rig::new(policy());
    assert!(
        r.at(
            S,
            Input::Lifecycle(LifecycleState::Warmed("Warmed:Running".into()))
        )
        .is_empty()
    );
    for _ in 0..20 {
        r.sample(quiet());
    }
    assert!(r.scale_ins().is_empty(), "no idle logic while warmed");
    assert_eq!(
        r.at(S, Input::Lifecycle(LifecycleState::InService)),
        vec![Action::UpdateDns]
    );
    assert!(
        r.at(S, Input::Lifecycle(LifecycleState::InService))
            .is_empty()
    );
    let mut r = Rig::new(policy());
    assert_eq!(
        r.at(S, Input::Lifecycle(LifecycleState::Standalone)),
        vec![Action::UpdateDns]
    );
}

#[test]
fn lifecycle_strings_from_imds() {
    assert_eq!(
        LifecycleState::from_imds("InService"),
        LifecycleState::InService
    );
    assert_eq!(
        LifecycleState::from_imds("Terminated\n"),
        LifecycleState::Terminating
    );
    assert_eq!(
        LifecycleState::from_imds("Warmed:Stopped"),
        LifecycleState::Warmed("Warmed:Stopped".into())
    );
    assert_eq!(
        LifecycleState::from_imds("something new"),
        LifecycleState::Pending
    );
}

#[test]
fn metrics_are_published_every_interval_with_sums() {
    let mut r = Rig::new(policy());
    assert_eq!(r.core.next_wake().map(|w| w - r.t0), Some(60 * S));
    for _ in 0..5 {
        r.sample(packets(10));
    }
    r.sample(with_probe(packets(10), players(3)));
    let published: Vec<_> = r
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::PublishMetrics {
                batch,
                flush: false,
            } => Some(batch.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].inbound_packets, Some(60));
    assert_eq!(published[0].players_online, Some(3));
    assert_eq!(r.core.next_wake().map(|w| w - r.t0), Some(120 * S));
}

#[test]
fn a_scale_in_the_group_ignored_is_retried_after_a_new_idle_window() {
    let mut r = Rig::new(policy());
    for _ in 0..6 {
        r.sample(quiet());
    }
    assert_eq!(r.scale_ins().len(), 1);
    r.at(S, Input::Done(Completion::ScaledIn));
    // The wake-up path set the capacity back to 1; still quiet for another idle_after.
    for _ in 0..6 {
        r.sample(quiet());
    }
    assert_eq!(r.scale_ins().len(), 1, "not before a whole new window");
    r.sample(quiet());
    assert_eq!(r.scale_ins().len(), 2);
}

#[test]
fn without_scaling_idle_only_alerts_once() {
    let mut p = policy();
    p.scaling = false;
    let mut r = Rig::new(p);
    for _ in 0..50 {
        r.sample(quiet());
    }
    assert!(r.scale_ins().is_empty());
    assert_eq!(r.alerts().len(), 1);
}

#[test]
fn lifecycle_stuck_alerts() {
    let mut r = Rig::new(policy());
    let a = r.at(
        S,
        Input::Done(Completion::Stuck(Problem::LifecycleStuck {
            error: "500".into(),
        })),
    );
    assert!(matches!(
        a.as_slice(),
        [Action::Alert(Alert::NeedsOperator(
            Problem::LifecycleStuck { .. }
        ))]
    ));
}

// --- Property tests ---------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Ev {
    Sample(u64, Sample),
    Crash(i64),
    CleanExit,
    Requested(i64),
    Running,
    Tick(u64),
}

#[derive(Debug, Clone, Copy)]
enum Sample {
    Busy,
    Quiet,
    Unknown,
    Players(u32),
    ProbeErrQuiet,
    ProbeErrBusy,
    ProbeErrUnknown,
    KeepAwake,
}

fn obs(s: Sample, secs: u64) -> Observation {
    let mut o = match s {
        Sample::Busy | Sample::ProbeErrBusy => packets(1000),
        Sample::Quiet | Sample::ProbeErrQuiet | Sample::Players(_) | Sample::KeepAwake => {
            packets(0)
        }
        Sample::Unknown | Sample::ProbeErrUnknown => unknown(),
    };
    o.interval = Duration::from_secs(secs.max(1));
    match s {
        Sample::Players(n) => o.probe = Some(players(n)),
        Sample::ProbeErrQuiet | Sample::ProbeErrBusy | Sample::ProbeErrUnknown => {
            o.probe = Some(probe_err())
        }
        Sample::KeepAwake => o.keep_awake = Some(true),
        _ => {}
    }
    o
}

/// The oracle: whether a sample is active, written independently of `classify`.
fn oracle_active(s: Sample, secs: u64) -> bool {
    match s {
        Sample::Busy | Sample::ProbeErrBusy => 1000.0 / secs.max(1) as f64 >= 2.0,
        Sample::Quiet | Sample::ProbeErrQuiet => false,
        Sample::Unknown | Sample::ProbeErrUnknown | Sample::KeepAwake => true,
        Sample::Players(n) => n > 0,
    }
}

fn sample_strategy() -> impl Strategy<Value = Sample> {
    prop_oneof![
        1 => Just(Sample::Busy),
        6 => Just(Sample::Quiet),
        1 => Just(Sample::Unknown),
        1 => (0u32..3).prop_map(Sample::Players),
        2 => Just(Sample::ProbeErrQuiet),
        1 => Just(Sample::ProbeErrBusy),
        1 => Just(Sample::ProbeErrUnknown),
        1 => Just(Sample::KeepAwake),
    ]
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    prop_oneof![
        8 => (1u64..25, sample_strategy()).prop_map(|(s, x)| Ev::Sample(s, x)),
        1 => (1i64..256).prop_map(Ev::Crash),
        1 => Just(Ev::CleanExit),
        1 => (0i64..256).prop_map(Ev::Requested),
        1 => Just(Ev::Running),
        1 => (1u64..4000).prop_map(Ev::Tick),
    ]
}

fn prop_policy(crashes: u32, grace: u64, stop_on_max: bool) -> Policy {
    Policy {
        crashes_before_shutdown: crashes,
        boot_grace: Duration::from_secs(grace),
        max_uptime: Some(Duration::from_secs(3 * 3600)),
        stop_on_max_uptime: stop_on_max,
        ..policy()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never scale in for idleness while any sample in the last `idle_after` was active,
    /// nor during boot grace, nor without samples covering the window.
    #[test]
    fn never_idle_scale_in_while_a_sample_in_the_window_is_active(
        evs in prop::collection::vec(ev_strategy(), 1..200),
        grace in 0u64..300,
        uptime in 0u64..200,
    ) {
        let p = prop_policy(1, grace, false);
        let idle_after = p.idle_after;
        let gap_limit = p.sample_interval * GAP_FACTOR;
        let mut r = Rig::with_uptime(p, Duration::from_secs(uptime));
        let booted = r.t0 - Duration::from_secs(uptime);
        // (time, active) for each sample, as the oracle sees it.
        let mut seen: Vec<(Instant, bool)> = vec![];
        for ev in evs {
            let (dt, input) = match ev {
                Ev::Sample(s, x) => (Duration::from_secs(s), Some((x, s))),
                Ev::Tick(s) => (Duration::from_secs(s), None),
                _ => (S, None),
            };
            let actions = match (&ev, input) {
                (_, Some((x, s))) => {
                    let t = r.now + dt;
                    let gap = seen.last().is_some_and(|(prev, _)| t - *prev > gap_limit);
                    seen.push((t, oracle_active(x, s) || gap));
                    r.at(dt, Input::Observation(obs(x, s)))
                }
                (Ev::Crash(c), _) => r.at(dt, exited(*c, false, false)),
                (Ev::CleanExit, _) => r.at(dt, exited(0, false, false)),
                (Ev::Requested(c), _) => r.at(dt, exited(*c, true, false)),
                (Ev::Running, _) => r.at(dt, running()),
                _ => r.at(dt, Input::Tick),
            };
            if actions.iter().any(is_idle_scale) {
                let now = r.now;
                prop_assert!(now - booted >= Duration::from_secs(grace), "scaled in during boot grace");
                prop_assert!(now - r.t0 >= idle_after, "scaled in before a whole window since start");
                let window_start = now - idle_after;
                for (t, active) in &seen {
                    if *t > window_start {
                        prop_assert!(!active, "an active sample at {:?} before {:?}", *t - r.t0, now - r.t0);
                    }
                }
            }
        }
    }

    /// Rule 11: once the game has answered with players, no sequence of samples, container
    /// events, ticks or diagnoses makes it `never_started`; and without an answer it is
    /// `never_started` at most once.
    #[test]
    fn a_game_with_players_is_never_never_started(
        evs in prop::collection::vec(ev_strategy(), 1..200),
        within in 1u64..900,
        players_at in 0usize..50,
        known in any::<bool>(),
    ) {
        let mut r = Rig::new(Policy { start_within: Some(Duration::from_secs(within)), ..prop_policy(1, 0, false) });
        r.at(S, Input::Lifecycle(LifecycleState::InService));
        let mut had_players = false;
        for (i, ev) in evs.iter().enumerate() {
            if i == players_at {
                r.at(S, running());
                r.sample(with_probe(busy(), players(2)));
                had_players = true;
            }
            let before = never_started_alerts(&r).len();
            let actions = match ev {
                Ev::Sample(s, x) => r.at(Duration::from_secs(*s), Input::Observation(obs(*x, *s))),
                Ev::Crash(c) => r.at(S, exited(*c, false, false)),
                Ev::CleanExit => r.at(S, exited(0, false, false)),
                Ev::Requested(c) => r.at(S, exited(*c, true, false)),
                Ev::Running => r.at(S, running()),
                Ev::Tick(s) => r.at(Duration::from_secs(*s), Input::Tick),
            };
            let mut follow = vec![];
            for a in &actions {
                if let Action::DiagnoseStart { .. } = a {
                    follow.push(Input::Done(Completion::StartDiagnosed { why: "pull failed".into(), known }));
                }
            }
            for f in follow {
                r.at(S, f);
            }
            if had_players {
                prop_assert_eq!(never_started_alerts(&r).len(), before, "never_started after players were online");
            }
        }
        prop_assert!(never_started_alerts(&r).len() <= 1);
    }

    /// Rule 12: a wake in which any sample was active after the game was up is never ended
    /// by `unused_after`.
    #[test]
    fn a_wake_with_a_player_is_never_ended_by_unused(
        evs in prop::collection::vec(ev_strategy(), 1..200),
        after in 10u64..900,
    ) {
        let mut r = Rig::new(Policy { unused_after: Some(Duration::from_secs(after)), ..prop_policy(1, 0, false) });
        r.at(S, Input::Lifecycle(LifecycleState::InService));
        r.sample(with_probe(quiet(), players(0))); // the game is up
        let mut came = false;
        for ev in &evs {
            let before = unused_scale_ins(&r).len();
            match ev {
                Ev::Sample(s, x) => {
                    came |= oracle_active(*x, *s);
                    r.at(Duration::from_secs(*s), Input::Observation(obs(*x, *s)));
                }
                Ev::Crash(c) => { r.at(S, exited(*c, false, false)); }
                Ev::CleanExit => { r.at(S, exited(0, false, false)); }
                Ev::Requested(c) => { r.at(S, exited(*c, true, false)); }
                Ev::Running => { r.at(S, running()); }
                Ev::Tick(s) => { r.at(Duration::from_secs(*s), Input::Tick); }
            }
            if came {
                prop_assert_eq!(unused_scale_ins(&r).len(), before, "ended by unused_after after a player came");
            }
        }
    }

    /// Probe errors and unknown packet counts never lead to a scale-in.
    #[test]
    fn probe_errors_and_unknown_counts_never_scale_in(
        steps in prop::collection::vec((1u64..30, prop_oneof![Just(Sample::Unknown), Just(Sample::ProbeErrUnknown)]), 1..300),
    ) {
        let mut r = Rig::new(prop_policy(1, 0, true));
        for (s, x) in steps {
            r.at(Duration::from_secs(s), Input::Observation(obs(x, s)));
        }
        prop_assert!(!r.log.iter().any(|(_, a)| is_idle_scale(a)));
    }

    /// The keep-awake file wins over everything the probe and packets say.
    #[test]
    fn keep_awake_always_wins(
        steps in prop::collection::vec((1u64..30, sample_strategy()), 1..300),
    ) {
        let mut r = Rig::new(prop_policy(1, 0, false));
        for (s, x) in steps {
            let mut o = obs(x, s);
            o.keep_awake = Some(true);
            r.at(Duration::from_secs(s), Input::Observation(o));
        }
        prop_assert!(!r.log.iter().any(|(_, a)| is_idle_scale(a)));
    }

    /// Exactly one crash alert per streak that reaches the threshold, and at most one
    /// max-uptime alert however long the instance runs.
    #[test]
    fn one_alert_per_crash_streak_and_per_max_uptime(
        evs in prop::collection::vec(prop_oneof![
            3 => (1i64..256).prop_map(Ev::Crash),
            1 => Just(Ev::CleanExit),
            1 => (0i64..256).prop_map(Ev::Requested),
            1 => (1u64..2000).prop_map(Ev::Tick),
        ], 1..150),
        threshold in 1u32..4,
        stop_on_max in any::<bool>(),
    ) {
        let mut p = prop_policy(threshold, 0, stop_on_max);
        p.scaling = false; // no ScaledIn feedback needed: streaks end only by clean exits
        let mut r = Rig::new(p);
        // The game is up (rule 11's never_started, told once per boot, is its own property).
        r.sample(with_probe(quiet(), players(0)));
        let mut streak = 0u32;
        let mut expected_crash_alerts = 0;
        for ev in &evs {
            match ev {
                Ev::Crash(c) => {
                    streak += 1;
                    if streak == threshold { expected_crash_alerts += 1; }
                    r.at(S, exited(*c, false, false));
                }
                Ev::CleanExit => { streak = 0; r.at(S, exited(0, false, false)); }
                Ev::Requested(c) => { r.at(S, exited(*c, true, false)); }
                Ev::Tick(s) => { r.at(Duration::from_secs(*s), Input::Tick); }
                _ => {}
            }
        }
        let crash_alerts = r.alerts().iter().filter(|a| matches!(a, Alert::Crash { .. })).count();
        prop_assert_eq!(crash_alerts, expected_crash_alerts);
        let max_alerts = r.alerts().iter().filter(|a| matches!(a, Alert::MaxUptime { .. })).count();
        let uptime = r.now - r.t0 + Duration::from_secs(3600);
        prop_assert_eq!(max_alerts, usize::from(uptime >= Duration::from_secs(3 * 3600)));
    }

    /// The drain always ends in exactly one Exit, whatever order completions arrive in,
    /// and the game is stopped at most once.
    #[test]
    fn drains_end_in_one_exit(
        first in prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
        then_terminate in any::<bool>(),
    ) {
        let mut r = Rig::new(policy());
        let mut pending: Vec<Action> = match first {
            0 => r.at(S, Input::Lifecycle(LifecycleState::Terminating)),
            1 => r.at(S, Input::SpotInterruption),
            2 => r.at(S, Input::Shutdown { system_stopping: true }),
            _ => r.at(S, Input::Shutdown { system_stopping: false }),
        };
        let must_exit = first != 1 || then_terminate;
        let mut terminated = first == 0;
        for _ in 0..20 {
            let Some(a) = pending.pop() else {
                if !terminated && then_terminate {
                    terminated = true;
                    pending = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
                    continue;
                }
                break;
            };
            let c = match a {
                Action::GracefulStop { .. } => Completion::GracefulStopDone { saved: Some(true) },
                Action::RevertDns => Completion::DnsReverted,
                Action::PublishMetrics { flush: true, .. } => Completion::MetricsFlushed,
                Action::CompleteLifecycle => Completion::LifecycleCompleted,
                _ => continue,
            };
            pending.extend(r.at(S, Input::Done(c)));
        }
        let exits = r.log.iter().filter(|(_, a)| *a == Action::Exit).count();
        prop_assert_eq!(exits, usize::from(must_exit));
        let stops = r.log.iter().filter(|(_, a)| matches!(a, Action::GracefulStop { .. })).count();
        prop_assert!(stops <= 1);
    }
}

fn pool_policy() -> Policy {
    Policy {
        launch_hook: true,
        prepare_image: true,
        ..policy()
    }
}

#[test]
fn warmed_lifecycle_states_parse_and_a_termination_from_the_pool_is_a_termination() {
    assert_eq!(
        LifecycleState::from_imds("Warmed:Stopped"),
        LifecycleState::Warmed("Warmed:Stopped".into())
    );
    assert_eq!(
        LifecycleState::from_imds("Warmed:Terminated"),
        LifecycleState::Terminating
    );
}

#[test]
fn going_into_the_pool_prepares_then_completes_the_launch_and_shows_nothing() {
    let mut r = Rig::new(pool_policy());
    let a = r.at(
        S,
        Input::Lifecycle(LifecycleState::Warmed("Warmed:Stopped".into())),
    );
    assert_eq!(a, vec![Action::PrepareForPool]);
    let a = r.at(S, Input::Done(Completion::Prepared));
    assert_eq!(a, vec![Action::CompleteLaunch]);
    assert!(r.at(S, Input::Done(Completion::LaunchCompleted)).is_empty());
    // Quiet for far longer than idle_after: no scale-in, no DNS, no alert.
    for _ in 0..30 {
        let a = r.sample(quiet());
        assert!(
            a.iter().all(|x| matches!(x, Action::PublishMetrics { .. })),
            "{a:?}"
        );
    }
    // The group stops the instance into the pool: no game to save, no record to revert.
    let a = r.at(
        S,
        Input::Shutdown {
            system_stopping: true,
        },
    );
    assert!(
        a.iter()
            .all(|x| matches!(x, Action::PublishMetrics { flush: true, .. })),
        "{a:?}"
    );
    let a = r.at(S, Input::Done(Completion::MetricsFlushed));
    assert_eq!(a, vec![Action::Exit]);
}

#[test]
fn without_an_image_to_pull_the_launch_completes_at_once() {
    let mut r = Rig::new(Policy {
        prepare_image: false,
        ..pool_policy()
    });
    let a = r.at(
        S,
        Input::Lifecycle(LifecycleState::Warmed("Warmed:Stopped".into())),
    );
    assert_eq!(a, vec![Action::CompleteLaunch]);
    assert!(
        r.at(
            S,
            Input::Lifecycle(LifecycleState::Warmed("Warmed:Stopped".into()))
        )
        .is_empty(),
        "once"
    );
}

#[test]
fn out_of_the_pool_points_dns_and_completes_the_launch_once() {
    let mut r = Rig::new(pool_policy());
    let a = r.at(S, Input::Lifecycle(LifecycleState::InService));
    assert_eq!(a, vec![Action::UpdateDns, Action::CompleteLaunch]);
    assert!(
        r.at(S, Input::Lifecycle(LifecycleState::InService))
            .is_empty()
    );
    // In service it idles and saves as always.
    let a = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(
        matches!(a[0], Action::GracefulStop { .. }) && a.contains(&Action::RevertDns),
        "{a:?}"
    );
}

#[test]
fn a_termination_from_the_pool_completes_at_once_with_nothing_visible() {
    let mut r = Rig::new(pool_policy());
    r.at(
        S,
        Input::Lifecycle(LifecycleState::Warmed("Warmed:Running".into())),
    );
    r.at(S, Input::Done(Completion::Prepared));
    let a = r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(
        matches!(a.as_slice(), [Action::PublishMetrics { flush: true, .. }]),
        "{a:?}"
    );
    let a = r.at(S, Input::Done(Completion::MetricsFlushed));
    assert_eq!(a, vec![Action::CompleteLifecycle]);
}

#[test]
fn an_unknown_lifecycle_state_still_saves_on_shutdown() {
    // No evidence of the pool: the game is saved and DNS reverted, as before warm pools.
    let mut r = Rig::new(pool_policy());
    let a = r.at(
        S,
        Input::Shutdown {
            system_stopping: true,
        },
    );
    assert!(matches!(a[0], Action::GracefulStop { .. }), "{a:?}");
    assert!(a.contains(&Action::RevertDns));
}

// ------------------------------------------------------------ rule 7's backstop

fn backstop_policy() -> Policy {
    Policy {
        max_uptime_backstop: true,
        metrics_interval: None,
        ..policy()
    }
}

/// The probe and the packet counter both fail: errors keep the server up (rule 4), but not
/// past `max_uptime`.
fn errors() -> Observation {
    with_probe(unknown(), probe_err())
}

fn backstop_stops(r: &Rig) -> Vec<(Duration, Duration)> {
    r.log
        .iter()
        .filter_map(|(t, a)| match a {
            Action::ScaleToZero(
                ScaleReason::MaxUptime {
                    unconfirmed_for: Some(q),
                    ..
                },
                _,
            ) => Some((*t, *q)),
            _ => None,
        })
        .collect()
}

#[test]
fn backstop_stops_a_server_whose_measuring_fails_at_max_uptime_with_one_alert() {
    // Booted 7 h 55 min ago; the probe and the packet counter fail from the start.
    let mut r = Rig::with_uptime(backstop_policy(), 8 * 3600 * S - 300 * S);
    for _ in 0..29 {
        r.sample(errors());
    }
    assert!(r.scale_ins().is_empty(), "errors never idle: {:?}", r.log);
    assert!(r.alerts().is_empty(), "{:?}", r.alerts());
    for _ in 0..2 {
        r.sample(errors());
    }
    let stops = backstop_stops(&r);
    assert_eq!(stops.len(), 1, "{:?}", r.log);
    assert_eq!(stops[0].0, 300 * S, "at max_uptime, not later");
    assert_eq!(
        stops[0].1,
        300 * S,
        "nobody confirmed since the agent started"
    );
    match r.alerts().as_slice() {
        [
            Alert::MaxUptime {
                scaling_in: true,
                unconfirmed_for: Some(q),
                ..
            },
        ] => assert_eq!(*q, 300 * S),
        other => panic!("{other:?}"),
    }
    // It stops through the lifecycle hook's save, like every scale-in.
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(
        r.log
            .iter()
            .any(|(_, a)| matches!(a, Action::GracefulStop { .. })),
        "{:?}",
        r.log
    );
    for _ in 0..50 {
        r.sample(errors());
    }
    assert_eq!(r.scale_ins().len(), 1);
    assert_eq!(r.alerts().len(), 1);
}

#[test]
fn backstop_only_alerts_while_a_player_is_confirmed_and_stops_once_nobody_is() {
    let mut r = Rig::with_uptime(backstop_policy(), 8 * 3600 * S - 60 * S);
    for _ in 0..20 {
        r.sample(with_probe(unknown(), players(3)));
    }
    // Past max_uptime with players: one alert, no stop.
    assert!(r.scale_ins().is_empty(), "{:?}", r.log);
    assert!(
        matches!(
            r.alerts().as_slice(),
            [Alert::MaxUptime {
                scaling_in: false,
                unconfirmed_for: None,
                ..
            }]
        ),
        "{:?}",
        r.alerts()
    );
    // Then the probe and the counter fail: still up for idle_after (a player was just seen).
    for _ in 0..5 {
        r.sample(errors());
    }
    assert!(r.scale_ins().is_empty(), "{:?}", r.log);
    r.sample(errors());
    let stops = backstop_stops(&r);
    assert_eq!(stops.len(), 1, "{:?}", r.log);
    assert_eq!(stops[0].1, 60 * S);
    assert_eq!(r.alerts().len(), 2, "{:?}", r.alerts());
    assert!(matches!(
        r.alerts()[1],
        Alert::MaxUptime {
            scaling_in: true,
            unconfirmed_for: Some(_),
            ..
        }
    ));
}

#[test]
fn backstop_counts_game_traffic_and_the_keep_awake_file_as_confirmed() {
    for confirming in [
        with_probe(busy(), probe_err()),
        Observation {
            keep_awake: Some(true),
            ..errors()
        },
    ] {
        let mut r = Rig::with_uptime(backstop_policy(), 9 * 3600 * S);
        for _ in 0..100 {
            r.sample(confirming.clone());
        }
        assert!(r.scale_ins().is_empty(), "{confirming:?}: {:?}", r.log);
        assert_eq!(r.alerts().len(), 1, "{confirming:?}: {:?}", r.alerts());
    }
}

#[test]
fn a_restarted_agent_past_max_uptime_watches_idle_after_before_the_backstop() {
    // The agent restarts on an instance up for 10 h: it knows nothing of the last hour.
    let mut r = Rig::with_uptime(backstop_policy(), 10 * 3600 * S);
    let wake = r.core.next_wake().unwrap();
    assert_eq!(wake - r.t0, 60 * S, "its first wake-up is the backstop's");
    for _ in 0..5 {
        r.sample(errors());
    }
    assert!(r.log.is_empty(), "nothing said or done yet: {:?}", r.log);
    r.sample(errors());
    assert_eq!(backstop_stops(&r).len(), 1, "{:?}", r.log);
    assert_eq!(
        r.alerts().len(),
        1,
        "one alert, the backstop's: {:?}",
        r.alerts()
    );
}

#[test]
fn backstop_off_or_stop_on_max_uptime_keep_their_meaning() {
    // Off: errors keep the server up past max_uptime, with one alert (the old default).
    let mut p = backstop_policy();
    p.max_uptime_backstop = false;
    let mut r = Rig::with_uptime(p, 8 * 3600 * S - 60 * S);
    for _ in 0..100 {
        r.sample(errors());
    }
    assert!(r.scale_ins().is_empty(), "{:?}", r.log);
    assert_eq!(r.alerts().len(), 1);
    // stop_on_max_uptime stops even a full server, as asked, and is not the backstop.
    let mut p = backstop_policy();
    p.stop_on_max_uptime = true;
    let mut r = Rig::with_uptime(p, 8 * 3600 * S - 60 * S);
    for _ in 0..100 {
        r.sample(with_probe(busy(), players(4)));
    }
    assert!(backstop_stops(&r).is_empty());
    assert!(matches!(
        r.scale_ins().as_slice(),
        [ScaleReason::MaxUptime {
            unconfirmed_for: None,
            ..
        }]
    ));
}

#[derive(Debug, Clone)]
enum Seen {
    Players(u32),
    Zero,
    Busy,
    Quiet,
    Errors,
    KeepAwake,
    /// No sample for this many seconds (a stalled sampler).
    Gap(u64),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Rule 7's backstop never stops a server with a player confirmed in the last `idle_after`
    /// (whatever errors, gaps and quiet samples come between), and past `max_uptime` a server
    /// with no confirmed player is always stopped within `idle_after` plus a sample.
    #[test]
    fn backstop_never_stops_a_confirmed_player_and_always_stops_the_unconfirmed(
        seen in prop::collection::vec(prop_oneof![
            3 => (1u32..5).prop_map(Seen::Players),
            1 => Just(Seen::Zero),
            2 => Just(Seen::Busy),
            1 => Just(Seen::Quiet),
            4 => Just(Seen::Errors),
            1 => Just(Seen::KeepAwake),
            1 => (1u64..200).prop_map(Seen::Gap),
        ], 1..200),
        before in 0u64..600,
    ) {
        let mut p = backstop_policy();
        p.max_uptime = Some(3600 * S);
        let idle_after = p.idle_after;
        let before = Duration::from_secs(before);
        let mut r = Rig::with_uptime(p, 3600 * S - before);
        let mut confirmed_at = Duration::ZERO; // the agent's start
        for s in &seen {
            let obs = match s {
                Seen::Players(n) => with_probe(quiet(), players(*n)),
                Seen::Zero => with_probe(busy(), players(0)),
                Seen::Busy => with_probe(busy(), probe_err()),
                Seen::Quiet => with_probe(quiet(), probe_err()),
                Seen::Errors => errors(),
                Seen::KeepAwake => Observation { keep_awake: Some(true), ..errors() },
                Seen::Gap(secs) => {
                    r.at(Duration::from_secs(*secs), Input::Tick);
                    continue;
                }
            };
            let stopped_before = r.scale_ins().len();
            r.sample(obs);
            let t = r.now - r.t0;
            if matches!(s, Seen::Players(_) | Seen::Busy | Seen::KeepAwake) && stopped_before == 0 {
                confirmed_at = t;
            }
            for (at, _) in backstop_stops(&r) {
                prop_assert!(at >= confirmed_at + idle_after,
                    "stopped at {at:?}, a player confirmed at {confirmed_at:?}");
            }
        }
        // Then nobody is confirmed for idle_after and a sample, past max_uptime.
        if r.now - r.t0 < before {
            r.at(before - (r.now - r.t0), Input::Tick);
        }
        for _ in 0..7 {
            r.sample(errors());
        }
        prop_assert!(!r.scale_ins().is_empty(), "still up: {:?}", r.log);
    }
}

#[test]
fn a_refused_call_is_told_once_per_fix() {
    let mut r = Rig::new(policy());
    let refused = |fix: &str| {
        Input::Done(Completion::Stuck(Problem::Refused {
            what: "publish the metrics".into(),
            fix: fix.into(),
            error: "AccessDenied".into(),
        }))
    };
    for _ in 0..5 {
        r.at(60 * S, refused("allow cloudwatch:PutMetricData"));
    }
    r.at(S, refused("allow autoscaling:SetDesiredCapacity"));
    r.at(S, refused("allow cloudwatch:PutMetricData"));
    let told: Vec<_> = r
        .alerts()
        .into_iter()
        .filter_map(|a| match a {
            Alert::NeedsOperator(Problem::Refused { fix, .. }) => Some(fix.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        vec![
            "allow cloudwatch:PutMetricData".to_string(),
            "allow autoscaling:SetDesiredCapacity".to_string()
        ]
    );
    // Transient problems keep their own rule: each stuck report is told.
    r.at(
        S,
        Input::Done(Completion::Stuck(Problem::ScaleInStuck {
            error: "x".into(),
        })),
    );
    assert_eq!(r.alerts().len(), 3);
}

#[test]
fn metrics_failing_in_a_row_is_told_once_per_streak_before_the_heartbeat_alarm() {
    let mut r = Rig::new(policy());
    let publish = |failed: Option<&str>, permanent: bool| {
        Input::Done(Completion::MetricsPublished {
            failed: failed.map(str::to_string),
            permanent,
        })
    };
    let stuck = |r: &Rig| {
        r.alerts()
            .iter()
            .filter(|a| matches!(a, Alert::NeedsOperator(Problem::MetricsStuck { .. })))
            .count()
    };
    for _ in 0..METRICS_STUCK_AFTER - 1 {
        r.at(60 * S, publish(Some("503"), false));
    }
    assert_eq!(stuck(&r), 0, "a short outage stays quiet");
    // One success ends the streak: four more failures are still quiet.
    r.at(60 * S, publish(None, false));
    for _ in 0..METRICS_STUCK_AFTER - 1 {
        r.at(60 * S, publish(Some("503"), false));
    }
    assert_eq!(stuck(&r), 0);
    r.at(60 * S, publish(Some("503"), false));
    assert_eq!(stuck(&r), 1, "{:?}", r.alerts());
    for _ in 0..20 {
        r.at(60 * S, publish(Some("503"), false));
    }
    assert_eq!(stuck(&r), 1, "told once per streak");
    // A new streak after a success is told again.
    r.at(60 * S, publish(None, false));
    for _ in 0..METRICS_STUCK_AFTER {
        r.at(60 * S, publish(Some("503"), false));
    }
    assert_eq!(stuck(&r), 2);
    // Refusals are told as Refused, by the executor, not as this.
    let mut r = Rig::new(policy());
    for _ in 0..20 {
        r.at(60 * S, publish(Some("AccessDenied"), true));
    }
    assert_eq!(stuck(&r), 0);
    // Nothing here ever scales in: the alarm decides that, the agent only warns.
    assert!(r.scale_ins().is_empty());
}

fn wake_outcomes(r: &Rig) -> Vec<WakeOutcome> {
    r.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::RecordWakeOutcome(w) => Some(*w),
            _ => None,
        })
        .collect()
}

fn published_wakes(r: &Rig) -> Vec<WakeOutcome> {
    r.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::PublishMetrics { batch, .. } => batch.wake,
            _ => None,
        })
        .collect()
}

/// Drives a drain to its end: the game saved, DNS back, metrics flushed, the hook completed.
fn finish_drain(r: &mut Rig) {
    r.at(
        S,
        Input::Done(Completion::GracefulStopDone { saved: Some(true) }),
    );
    r.at(S, Input::Done(Completion::DnsReverted));
    r.at(S, Input::Done(Completion::MetricsFlushed));
    r.at(S, Input::Done(Completion::LifecycleCompleted));
}

#[test]
fn a_wakes_outcome_is_told_once_when_the_game_stops_with_whether_a_player_came() {
    for came in [true, false] {
        // Uptime 3600 s when the core starts (Rig::new).
        let mut r = Rig::new(Policy {
            unused_after: Some(600 * S),
            ..policy()
        });
        r.at(S, Input::Lifecycle(LifecycleState::InService));
        r.sample(with_probe(quiet(), players(0)));
        r.sample(with_probe(
            if came { busy() } else { quiet() },
            players(u32::from(came)),
        ));
        let before = r.now - r.t0;
        assert!(wake_outcomes(&r).is_empty(), "not before the stop");
        // Whoever set the capacity to 0: the game's stop is the wake's end.
        r.at(S, Input::SpotInterruption);
        r.at(S, Input::Lifecycle(LifecycleState::Terminating));
        finish_drain(&mut r);
        let want = WakeOutcome {
            joined: came,
            up_for: 3600 * S + before + S,
        };
        assert_eq!(wake_outcomes(&r), vec![want], "came: {came}");
        assert_eq!(published_wakes(&r), vec![want], "came: {came}");
        assert!(r.core.finished());
    }
}

#[test]
fn an_agent_restart_or_a_pool_instance_tells_no_wake() {
    // The agent alone stops (systemctl restart): the game runs on, the wake goes on.
    let mut r = Rig::new(policy());
    r.at(S, Input::Lifecycle(LifecycleState::InService));
    r.sample(quiet());
    r.at(
        S,
        Input::Shutdown {
            system_stopping: false,
        },
    );
    r.at(S, Input::Done(Completion::MetricsFlushed));
    assert!(wake_outcomes(&r).is_empty(), "{:?}", r.log);
    assert!(published_wakes(&r).is_empty());
    // Prepared for the warm pool, then terminated from it: nobody woke it.
    let mut r = Rig::new(pool_policy());
    r.at(
        S,
        Input::Lifecycle(LifecycleState::Warmed("Warmed:Stopped".into())),
    );
    r.at(S, Input::Done(Completion::Prepared));
    r.at(S, Input::Done(Completion::LaunchCompleted));
    r.at(S, Input::Lifecycle(LifecycleState::Terminating));
    assert!(wake_outcomes(&r).is_empty(), "{:?}", r.log);
    assert!(published_wakes(&r).is_empty());
}
