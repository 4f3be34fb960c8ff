//! The pure side of the container watcher: which Docker events concern the game container, and
//! whether an exit was requested (a stop) or not (a crash when it is non-zero or an OOM kill).
//!
//! [`Tracker`] is a sans-IO state machine. The Docker adapter feeds it events ([`Ev`]) and,
//! after each reconnect, a listing ([`Snapshot`]); it answers with [`Outcome`]s.
//!
//! How an exit is classified:
//! - The agent marked the container before its graceful stop: requested.
//! - Docker's stop or kill API was used (`docker stop`, ECS stopping the task, `docker rm -f`):
//!   Docker emits a `kill` event carrying the signal *before* `die` (the `stop` event only comes
//!   after `die`, too late to decide). A `kill` with a terminating signal, within
//!   [`Tracker::new`]'s window before the `die`, makes the exit requested whatever its code.
//!   Signals used for reloads or notifications (HUP, USR1, USR2, WINCH...) do not.
//! - Anything else is unrequested: a crash when the code is non-zero or the kernel OOM-killed
//!   it. A `kill -9` of the game's process from the host gives `die` with 137 and no `kill`
//!   event, so it is a crash.
//! - An exit found by a reconcile, whose events were lost because dockerd restarted: dockerd
//!   stops every container on its own shutdown (stop signal, then SIGKILL), so a code that such
//!   a stop produces (0, or 128 + TERM, KILL, INT or QUIT) counts as requested. Any other code,
//!   or an OOM kill, is still a crash. When the events were not lost (dockerd kept running),
//!   the adapter replays them before reconciling, so the first rules apply.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::config::ContainerSelector;

/// The label ECS puts on each container of a task, holding the container's name in the task
/// definition.
pub const ECS_LABEL: &str = "com.amazonaws.ecs.container-name";

/// How many recent event keys are remembered to drop replayed duplicates.
const SEEN_KEYS: usize = 1024;

/// Exit codes a dockerd shutdown produces: a clean exit on the stop signal, or death by
/// SIGTERM (143), SIGKILL (137), SIGINT (130) or SIGQUIT (131).
const DAEMON_STOP_CODES: [i64; 5] = [0, 128 + 15, 128 + 9, 128 + 2, 128 + 3];

/// Whether a container with this name and these labels is the game container.
pub fn selects(selector: &ContainerSelector, name: &str, labels: &HashMap<String, String>) -> bool {
    match selector {
        ContainerSelector::EcsContainerName(n) => labels.get(ECS_LABEL) == Some(n),
        ContainerSelector::DockerName(n) => name.trim_start_matches('/') == n,
    }
}

/// Whether a `kill` with this signal asks the container to stop. Docker 20.10 sends the
/// number (`"15"`); names (`"SIGTERM"`, `"TERM"`) are accepted too. Signals commonly used to
/// reload or notify a process are not stop requests; an unparsable one is, because only the
/// stop and kill APIs emit `kill` events.
pub fn is_stop_signal(signal: &str) -> bool {
    let s = signal.trim();
    let name = s.strip_prefix("SIG").unwrap_or(s);
    let number = match s.parse::<u32>() {
        Ok(n) => n,
        Err(_) => match name.to_ascii_uppercase().as_str() {
            "HUP" => 1,
            "USR1" => 10,
            "USR2" => 12,
            "CHLD" => 17,
            "CONT" => 18,
            "URG" => 23,
            "WINCH" => 28,
            "IO" | "POLL" => 29,
            _ => return true,
        },
    };
    !matches!(number, 1 | 10 | 12 | 17 | 18 | 23 | 28 | 29)
}

/// What a Docker container event says, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start,
    Kill { signal: String },
    Oom,
    Die { exit_code: i64 },
    Stop,
    Destroy,
    Health { status: String },
    Other(String),
}

impl Action {
    /// Parses Docker's `Action` string and the event attributes.
    pub fn parse(action: &str, attributes: &HashMap<String, String>) -> Self {
        match action {
            "start" => Self::Start,
            "kill" => Self::Kill {
                signal: attributes.get("signal").cloned().unwrap_or_default(),
            },
            "oom" => Self::Oom,
            "die" => Self::Die {
                // A die without a readable code is treated as unknown (-1), which is non-zero.
                exit_code: attributes
                    .get("exitCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(-1),
            },
            "stop" => Self::Stop,
            "destroy" => Self::Destroy,
            a => match a.strip_prefix("health_status:") {
                Some(status) => Self::Health {
                    status: status.trim().to_string(),
                },
                None => Self::Other(a.to_string()),
            },
        }
    }

    fn key(&self) -> &str {
        match self {
            Self::Start => "start",
            Self::Kill { .. } => "kill",
            Self::Oom => "oom",
            Self::Die { .. } => "die",
            Self::Stop => "stop",
            Self::Destroy => "destroy",
            Self::Health { .. } => "health_status",
            Self::Other(a) => a,
        }
    }
}

/// One event about a selected container. `time_ns` is Docker's `timeNano`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    pub id: String,
    pub name: String,
    pub action: Action,
    pub time_ns: i64,
}

/// A selected container as a listing (plus inspect) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// `State.StartedAt`, if it ever started.
    pub started_ns: Option<i64>,
    /// `State.FinishedAt`, if it ever finished.
    pub finished_ns: Option<i64>,
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// A classified exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub id: String,
    pub name: String,
    pub exit_code: i64,
    pub requested: bool,
    pub oom_killed: bool,
    /// Why it was classified this way, for the log line.
    pub reason: String,
    pub time_ns: i64,
    /// The container's last log lines: filled in by the adapter for crashes only (the pure
    /// tracker has no logs, so it leaves this empty).
    pub log_tail: Vec<String>,
}

impl Exit {
    /// A crash as the adapter sees it: unrequested, and non-zero or OOM-killed. (The decision
    /// core also treats exits during the instance's termination as stops.)
    pub fn crash(&self) -> bool {
        !self.requested && (self.exit_code != 0 || self.oom_killed)
    }
}

/// What the tracker tells the adapter, and what the adapter passes on (with an exit's log tail
/// filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Running {
        id: String,
        name: String,
        time_ns: i64,
    },
    Exited(Exit),
    Oom {
        id: String,
        name: String,
        time_ns: i64,
    },
    Health {
        id: String,
        name: String,
        status: String,
        time_ns: i64,
    },
}

#[derive(Debug, Clone, Default)]
struct Run {
    name: String,
    running: bool,
    oom: bool,
    /// The last stop-request `kill`: its time and signal.
    stop_kill: Option<(i64, String)>,
}

type Key = (i64, String, String);

/// The classification state machine; see the module documentation.
#[derive(Debug, Clone)]
pub struct Tracker {
    runs: HashMap<String, Run>,
    seen: VecDeque<Key>,
    seen_set: HashSet<Key>,
    last: Option<Key>,
    window_ns: i64,
    /// Docker time up to which everything has been seen: the last event, or the last
    /// reconcile. Exits after it that no event reported are found by the next reconcile.
    horizon_ns: i64,
}

impl Tracker {
    /// `request_window`: how long before a `die` a stop-request `kill` still counts.
    /// `start_ns`: the watcher's start; exits before it are history and never reported.
    pub fn new(request_window: Duration, start_ns: i64) -> Self {
        Self {
            runs: HashMap::new(),
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
            last: None,
            window_ns: i64::try_from(request_window.as_nanos()).unwrap_or(i64::MAX),
            horizon_ns: start_ns,
        }
    }

    /// The time of the last event handled, to replay from after a reconnect.
    pub fn last_event_ns(&self) -> Option<i64> {
        self.last.as_ref().map(|k| k.0)
    }

    /// Whether `ev` is the last event handled (a replay that contains it lost nothing).
    pub fn is_last(&self, ev: &Ev) -> bool {
        self.last.as_ref() == Some(&key(ev))
    }

    /// Handles one event. `agent_requested`: the agent marked this container before stopping
    /// it (asked only for `die`). Replayed duplicates give `None`.
    pub fn event(&mut self, ev: &Ev, agent_requested: bool) -> Option<Outcome> {
        let k = key(ev);
        if !self.seen_set.insert(k.clone()) {
            return None;
        }
        self.seen.push_back(k.clone());
        if self.seen.len() > SEEN_KEYS
            && let Some(old) = self.seen.pop_front()
        {
            self.seen_set.remove(&old);
        }
        self.horizon_ns = self.horizon_ns.max(ev.time_ns);
        self.last = Some(k);

        let (id, name, t) = (ev.id.clone(), ev.name.clone(), ev.time_ns);
        match &ev.action {
            Action::Start => {
                // Already known running with no `die` since: the reconcile reported this start.
                if self.runs.get(&id).is_some_and(|r| r.running) {
                    return None;
                }
                self.runs.insert(
                    id.clone(),
                    Run {
                        name: name.clone(),
                        running: true,
                        ..Run::default()
                    },
                );
                Some(Outcome::Running {
                    id,
                    name,
                    time_ns: t,
                })
            }
            Action::Kill { signal } => {
                if is_stop_signal(signal) {
                    let run = self.runs.entry(id).or_default();
                    run.stop_kill = Some((t, signal.clone()));
                }
                None
            }
            Action::Oom => {
                self.runs.entry(id.clone()).or_default().oom = true;
                Some(Outcome::Oom {
                    id,
                    name,
                    time_ns: t,
                })
            }
            Action::Die { exit_code } => {
                let run = self.runs.entry(id.clone()).or_default();
                run.running = false;
                let kill = run
                    .stop_kill
                    .take()
                    .filter(|(at, _)| t.saturating_sub(*at) <= self.window_ns);
                let (requested, reason) = if agent_requested {
                    (true, "the agent stopped it".to_string())
                } else if let Some((_, signal)) = kill {
                    (
                        true,
                        format!(
                            "a stop was requested through Docker's API (kill signal {signal} before it died)"
                        ),
                    )
                } else {
                    (
                        false,
                        "nobody requested it (no Docker kill event before it died)".to_string(),
                    )
                };
                Some(Outcome::Exited(Exit {
                    id,
                    name,
                    exit_code: *exit_code,
                    requested,
                    oom_killed: std::mem::take(&mut run.oom),
                    reason,
                    time_ns: t,
                    log_tail: Vec::new(),
                }))
            }
            Action::Destroy => {
                self.runs.remove(&id);
                None
            }
            Action::Health { status } => Some(Outcome::Health {
                id,
                name,
                status: status.clone(),
                time_ns: t,
            }),
            Action::Stop | Action::Other(_) => None,
        }
    }

    /// Compares a listing with what the events said, after a (re)connect.
    ///
    /// `now_ns`: when the listing was taken; later exits are left to the event stream, which
    /// replays from there. `events_lost`: the events since the last one handled could not be
    /// replayed (dockerd restarted), so exits with a code a dockerd shutdown produces count as
    /// requested. `agent_requested` says whether the agent marked a container.
    pub fn reconcile(
        &mut self,
        listing: &[Snapshot],
        events_lost: bool,
        now_ns: i64,
        agent_requested: &dyn Fn(&str) -> bool,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        let horizon = self.horizon_ns;
        for s in listing {
            let known_running = self.runs.get(&s.id).is_some_and(|r| r.running);
            if s.running {
                // Running and known: nothing new, unless it restarted unseen (a restart
                // policy); then its earlier exit is unknown, and it runs again.
                let restarted = known_running && s.started_ns.is_some_and(|t| t > horizon);
                if !known_running || restarted {
                    self.runs.insert(
                        s.id.clone(),
                        Run {
                            name: s.name.clone(),
                            running: true,
                            ..Run::default()
                        },
                    );
                    out.push(Outcome::Running {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        time_ns: s.started_ns.unwrap_or(now_ns),
                    });
                }
                continue;
            }
            let Some(finished) = s.finished_ns else {
                continue;
            };
            if finished >= now_ns {
                continue;
            }
            // An exit nobody reported: the container was running when we last looked, or it
            // started and finished while the stream was down.
            if !(known_running || finished > horizon && !self.runs.contains_key(&s.id)) {
                continue;
            }
            let (requested, reason) = if agent_requested(&s.id) {
                (true, "the agent stopped it (exit found by a reconcile)")
            } else if s.oom_killed {
                (false, "it was OOM-killed while the event stream was down")
            } else if events_lost && DAEMON_STOP_CODES.contains(&s.exit_code) {
                (
                    true,
                    "dockerd restarted and stopped it (its events were lost; the exit code is a stop's)",
                )
            } else if events_lost {
                (
                    false,
                    "it exited with a code no dockerd shutdown produces while dockerd restarted",
                )
            } else {
                (
                    false,
                    "it exited while the event stream was down and no stop was requested",
                )
            };
            self.runs.insert(
                s.id.clone(),
                Run {
                    name: s.name.clone(),
                    ..Run::default()
                },
            );
            out.push(Outcome::Exited(Exit {
                id: s.id.clone(),
                name: s.name.clone(),
                exit_code: s.exit_code,
                requested,
                oom_killed: s.oom_killed,
                reason: reason.to_string(),
                time_ns: finished,
                log_tail: Vec::new(),
            }));
        }
        // Known running but gone from the listing: removed while the stream was down. Its
        // exit code is unknown (-1); an unknown exit is never counted as a crash.
        let gone: Vec<String> = self
            .runs
            .iter()
            .filter(|(id, r)| r.running && !listing.iter().any(|s| &s.id == *id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let name = self.runs.remove(&id).map(|r| r.name).unwrap_or_default();
            out.push(Outcome::Exited(Exit {
                id,
                name,
                exit_code: -1,
                requested: true,
                oom_killed: false,
                reason: "it was removed while the event stream was down; its exit is unknown and not counted as a crash".to_string(),
                time_ns: now_ns,
                log_tail: Vec::new(),
            }));
        }
        self.horizon_ns = self.horizon_ns.max(now_ns);
        out
    }
}

fn key(ev: &Ev) -> Key {
    (ev.time_ns, ev.id.clone(), ev.action.key().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn ev(id: &str, action: Action, t: i64) -> Ev {
        Ev {
            id: id.into(),
            name: format!("name-{id}"),
            action,
            time_ns: t,
        }
    }

    fn kill(signal: &str) -> Action {
        Action::Kill {
            signal: signal.into(),
        }
    }

    fn die(code: i64) -> Action {
        Action::Die { exit_code: code }
    }

    fn tracker() -> Tracker {
        Tracker::new(Duration::from_secs(600), 0)
    }

    /// Feeds events (no agent mark) and returns the last exit.
    fn exit_after(events: &[(Action, i64)]) -> Exit {
        let mut t = tracker();
        let mut last = None;
        for (a, at) in events {
            if let Some(Outcome::Exited(e)) = t.event(&ev("a", a.clone(), *at), false) {
                last = Some(e);
            }
        }
        last.expect("an exit")
    }

    fn no_mark(_: &str) -> bool {
        false
    }

    fn snap(id: &str, running: bool, finished: Option<i64>, code: i64, oom: bool) -> Snapshot {
        Snapshot {
            id: id.into(),
            name: format!("name-{id}"),
            running,
            started_ns: Some(1),
            finished_ns: finished,
            exit_code: code,
            oom_killed: oom,
        }
    }

    #[test]
    fn parses_actions() {
        let mut attrs = HashMap::new();
        attrs.insert("exitCode".to_string(), "137".to_string());
        attrs.insert("signal".to_string(), "15".to_string());
        assert_eq!(Action::parse("die", &attrs), die(137));
        assert_eq!(Action::parse("kill", &attrs), kill("15"));
        assert_eq!(Action::parse("die", &HashMap::new()), die(-1));
        assert_eq!(
            Action::parse("health_status: unhealthy", &attrs),
            Action::Health {
                status: "unhealthy".into()
            }
        );
        assert_eq!(
            Action::parse("exec_start: sh", &attrs),
            Action::Other("exec_start: sh".into())
        );
    }

    #[test]
    fn stop_signals() {
        for s in [
            "15", "9", "2", "3", "SIGTERM", "TERM", "KILL", "SIGINT", "weird",
        ] {
            assert!(is_stop_signal(s), "{s}");
        }
        for s in ["1", "10", "12", "28", "SIGHUP", "USR1", "SIGWINCH"] {
            assert!(!is_stop_signal(s), "{s}");
        }
    }

    #[test]
    fn selection_is_exact() {
        let mut labels = HashMap::new();
        labels.insert(ECS_LABEL.to_string(), "game".to_string());
        let ecs = ContainerSelector::EcsContainerName("game".into());
        assert!(selects(&ecs, "whatever", &labels));
        assert!(!selects(
            &ContainerSelector::EcsContainerName("gam".into()),
            "x",
            &labels
        ));
        assert!(!selects(&ecs, "game", &HashMap::new()));
        let by_name = ContainerSelector::DockerName("game".into());
        assert!(selects(&by_name, "/game", &HashMap::new()));
        assert!(selects(&by_name, "game", &HashMap::new()));
        assert!(!selects(&by_name, "game2", &HashMap::new()));
    }

    #[test]
    fn exit_table() {
        // (events before the die, exit code, requested, crash)
        type Case = (&'static str, Vec<(Action, i64)>, bool, bool);
        let cases: Vec<Case> = vec![
            (
                "crash",
                vec![(Action::Start, 0), (die(3), MIN)],
                false,
                true,
            ),
            (
                "clean exit",
                vec![(Action::Start, 0), (die(0), MIN)],
                false,
                false,
            ),
            (
                "kill -9 from the host",
                vec![(Action::Start, 0), (die(137), MIN)],
                false,
                true,
            ),
            (
                "docker stop, SIGTERM ignored",
                vec![
                    (Action::Start, 0),
                    (kill("15"), MIN),
                    (kill("9"), MIN + 10),
                    (die(137), MIN + 11),
                ],
                true,
                false,
            ),
            (
                "docker stop, clean",
                vec![(Action::Start, 0), (kill("15"), MIN), (die(0), MIN + 5)],
                true,
                false,
            ),
            (
                "docker stop, exit 143",
                vec![(Action::Start, 0), (kill("15"), MIN), (die(143), MIN + 5)],
                true,
                false,
            ),
            (
                "docker rm -f",
                vec![(Action::Start, 0), (kill("9"), MIN), (die(137), MIN + 1)],
                true,
                false,
            ),
            (
                "reload signal then crash",
                vec![(Action::Start, 0), (kill("1"), MIN), (die(3), MIN + 1)],
                false,
                true,
            ),
            (
                "stale kill outside the window",
                vec![
                    (Action::Start, 0),
                    (kill("15"), MIN),
                    (die(3), MIN + 11 * MIN),
                ],
                false,
                true,
            ),
            (
                "a kill belongs to its run only",
                vec![
                    (kill("15"), 0),
                    (die(0), 1),
                    (Action::Start, 2),
                    (die(3), 3),
                ],
                false,
                true,
            ),
        ];
        for (what, events, requested, crash) in cases {
            let e = exit_after(&events);
            assert_eq!(e.requested, requested, "{what}: {e:?}");
            assert_eq!(e.crash(), crash, "{what}: {e:?}");
        }
    }

    #[test]
    fn oom_is_a_crash_and_belongs_to_its_run() {
        let e = exit_after(&[(Action::Start, 0), (Action::Oom, 1), (die(137), 2)]);
        assert!(e.oom_killed && e.crash());
        let e = exit_after(&[
            (Action::Start, 0),
            (Action::Oom, 1),
            (die(137), 2),
            (Action::Start, 3),
            (die(0), 4),
        ]);
        assert!(!e.oom_killed && !e.crash());
    }

    #[test]
    fn agent_mark_makes_any_exit_requested() {
        let mut t = tracker();
        t.event(&ev("a", Action::Start, 0), false);
        let Some(Outcome::Exited(e)) = t.event(&ev("a", die(1), 1), true) else {
            panic!("no exit")
        };
        assert!(e.requested && !e.crash());
    }

    #[test]
    fn replayed_events_are_dropped() {
        let mut t = tracker();
        assert!(t.event(&ev("a", Action::Start, 5), false).is_some());
        assert!(t.event(&ev("a", Action::Start, 5), false).is_none());
        assert!(t.event(&ev("a", die(3), 6), false).is_some());
        assert!(t.event(&ev("a", die(3), 6), false).is_none());
        assert!(t.is_last(&ev("a", die(3), 6)));
        assert_eq!(t.last_event_ns(), Some(6));
    }

    #[test]
    fn reconcile_reports_running_once() {
        let mut t = tracker();
        let out = t.reconcile(&[snap("a", true, None, 0, false)], false, 10, &no_mark);
        assert!(matches!(&out[..], [Outcome::Running { id, .. }] if id == "a"));
        assert!(
            t.reconcile(&[snap("a", true, None, 0, false)], false, 20, &no_mark)
                .is_empty()
        );
    }

    #[test]
    fn a_start_the_reconcile_reported_is_not_repeated() {
        let mut t = tracker();
        assert_eq!(
            t.reconcile(&[snap("a", true, None, 0, false)], false, 10, &no_mark)
                .len(),
            1
        );
        assert!(t.event(&ev("a", Action::Start, 11), false).is_none());
        assert!(matches!(
            t.event(&ev("a", die(3), 12), false),
            Some(Outcome::Exited(_))
        ));
        assert!(matches!(
            t.event(&ev("a", Action::Start, 13), false),
            Some(Outcome::Running { .. })
        ));
    }

    #[test]
    fn reconcile_ignores_history() {
        let mut t = Tracker::new(Duration::from_secs(600), 100);
        assert!(
            t.reconcile(
                &[snap("old", false, Some(50), 3, false)],
                false,
                200,
                &no_mark
            )
            .is_empty()
        );
    }

    #[test]
    fn reconcile_finds_unseen_exits() {
        // (exit code, oom, events lost, requested, crash)
        let cases = [
            (3, false, false, false, true),
            (3, false, true, false, true),
            (137, false, false, false, true),
            (137, false, true, true, false),
            (143, false, true, true, false),
            (0, false, true, true, false),
            (0, false, false, false, false),
            (137, true, true, false, true),
        ];
        for (code, oom, lost, requested, crash) in cases {
            let mut t = tracker();
            t.event(&ev("a", Action::Start, 10), false);
            let out = t.reconcile(&[snap("a", false, Some(20), code, oom)], lost, 30, &no_mark);
            let [Outcome::Exited(e)] = &out[..] else {
                panic!("{out:?}")
            };
            let case = (code, oom, lost);
            assert_eq!(
                (e.requested, e.crash()),
                (requested, crash),
                "{case:?}: {e:?}"
            );
            // Reported once.
            assert!(
                t.reconcile(&[snap("a", false, Some(20), code, oom)], lost, 40, &no_mark)
                    .is_empty()
            );
        }
    }

    #[test]
    fn reconcile_leaves_later_exits_to_the_stream() {
        let mut t = tracker();
        t.event(&ev("a", Action::Start, 10), false);
        assert!(
            t.reconcile(&[snap("a", false, Some(31), 3, false)], false, 30, &no_mark)
                .is_empty()
        );
        let Some(Outcome::Exited(e)) = t.event(&ev("a", die(3), 31), false) else {
            panic!("no exit")
        };
        assert!(e.crash());
    }

    #[test]
    fn reconcile_sees_a_replacement_that_crashed_during_the_gap() {
        let mut t = tracker();
        t.event(&ev("a", Action::Start, 10), false);
        t.event(&ev("a", kill("15"), 11), false);
        t.event(&ev("a", die(0), 12), false);
        let out = t.reconcile(&[snap("b", false, Some(20), 3, false)], false, 30, &no_mark);
        assert!(
            matches!(&out[..], [Outcome::Exited(e)] if e.id == "b" && e.crash()),
            "{out:?}"
        );
    }

    #[test]
    fn reconcile_honours_the_agent_mark() {
        let mut t = tracker();
        t.event(&ev("a", Action::Start, 10), false);
        let out = t.reconcile(&[snap("a", false, Some(20), 3, false)], false, 30, &|id| {
            id == "a"
        });
        assert!(matches!(&out[..], [Outcome::Exited(e)] if e.requested));
    }

    #[test]
    fn reconcile_reports_a_removed_container_without_a_crash() {
        let mut t = tracker();
        t.event(&ev("a", Action::Start, 10), false);
        let out = t.reconcile(&[], true, 30, &no_mark);
        assert!(
            matches!(&out[..], [Outcome::Exited(e)] if e.exit_code == -1 && !e.crash()),
            "{out:?}"
        );
    }
}
