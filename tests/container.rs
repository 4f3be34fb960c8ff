//! Integration tests: the Docker adapter against the real dockerd (see docs/design.md).
//!
//! Every container is named `cmct-...` and labelled `cmct.test=<test>-<pid>`, and removed by a
//! guard even when the test fails. The dockerd restart test takes a write lock that the other
//! tests take for reading, so it never runs beside them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use container_manager_agent::config::{ContainerConfig, ContainerSelector};
use container_manager_agent::container::{Containers, DockerContainers};
use container_manager_agent::decide::{
    Action, Alert, ContainerEvent, Core, Input, LifecycleState, Policy, Readiness,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{RwLock, mpsc};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "cm-test/busybox:1";
const SOCKET: &str = "unix:///var/run/docker.sock";
const WAIT: Duration = Duration::from_secs(30);

/// Read: an ordinary test. Write: the dockerd restart.
static DOCKERD: RwLock<()> = RwLock::const_new(());

fn uniq(test: &str) -> String {
    format!("cmct-{test}-{}", std::process::id())
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes every container of one test when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=cmct.test={}", self.0);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

/// Starts a game container: `--network host`, the test label, the ECS label `ecs`.
fn run_game(test: &str, name: &str, ecs: &str, extra: &[&str], script: &str) -> String {
    let label = format!("cmct.test={test}");
    let ecs_label = format!("com.amazonaws.ecs.container-name={ecs}");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--label",
        &label,
        "--label",
        &ecs_label,
        "--network",
        "host",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "-c", script]);
    docker(&args)
}

fn config(
    selector: ContainerSelector,
    stop_timeout: Duration,
    pre_stop: &[&str],
) -> ContainerConfig {
    ContainerConfig {
        selector,
        stop_timeout,
        pre_stop_command: pre_stop.iter().map(|s| s.to_string()).collect(),
        crashes_before_shutdown: 1,
        alert_log_lines: 5,
        image: None,
        start_within: None,
    }
}

fn ecs(name: &str) -> ContainerSelector {
    ContainerSelector::EcsContainerName(name.to_string())
}

/// The adapter's watcher, running in its own task.
struct Watch {
    adapter: Arc<DockerContainers>,
    rx: mpsc::Receiver<ContainerEvent>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start(endpoint: &str, config: ContainerConfig) -> Self {
        let adapter = Arc::new(DockerContainers::new(endpoint, config).unwrap());
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let (a, c) = (adapter.clone(), cancel.clone());
        let task = tokio::spawn(async move { a.watch(tx, c).await });
        Self {
            adapter,
            rx,
            cancel,
            task,
        }
    }

    async fn next(&mut self) -> ContainerEvent {
        timeout(WAIT, self.rx.recv())
            .await
            .expect("an event in time")
            .expect("the watcher is alive")
    }

    async fn running(&mut self, want: &str) {
        match self.next().await {
            ContainerEvent::Running { id, .. } => assert_eq!(id, want),
            other => panic!("expected Running for {want}, got {other:?}"),
        }
    }

    /// The next event, which must be the exit of `want`: (code, requested, oom, log tail).
    async fn exited(&mut self, want: &str) -> (i64, bool, bool, Vec<String>) {
        match self.next().await {
            ContainerEvent::Exited {
                id,
                exit_code,
                requested,
                oom_killed,
                log_tail,
                ..
            } => {
                assert_eq!(id, want);
                (exit_code, requested, oom_killed, log_tail)
            }
            other => panic!("expected the exit of {want}, got {other:?}"),
        }
    }

    async fn nothing_for(&mut self, d: Duration) {
        if let Ok(Some(ev)) = timeout(d, self.rx.recv()).await {
            panic!("unexpected event {ev:?}");
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the watcher stops on cancellation")
            .unwrap();
    }
}

/// Gives the watcher time to subscribe, so a container started next is seen by events.
async fn settle() {
    sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_non_zero_exit_is_a_crash_with_its_log_tail() {
    let _l = DOCKERD.read().await;
    let t = uniq("crash");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    let id = run_game(
        &t,
        &t,
        &t,
        &[],
        "for i in 1 2 3 4 5 6 7; do echo line $i; done; sleep 0.3; echo boom >&2; sleep 1; exit 3",
    );
    w.running(&id).await;
    let (code, requested, oom, tail) = w.exited(&id).await;
    assert_eq!((code, requested, oom), (3, false, false));
    assert_eq!(
        tail,
        ["line 4", "line 5", "line 6", "line 7", "boom"],
        "the last 5 lines, stderr included"
    );
    w.stop().await;
}

#[tokio::test]
async fn sigkill_of_the_game_process_from_the_host_is_a_crash() {
    let _l = DOCKERD.read().await;
    let t = uniq("kill9");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    let id = run_game(&t, &t, &t, &[], "while :; do sleep 0.1; done");
    w.running(&id).await;
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(status.success());
    let (code, requested, oom, tail) = w.exited(&id).await;
    assert_eq!((code, requested, oom), (137, false, false));
    assert!(tail.is_empty(), "no output, no lines: {tail:?}");
    w.stop().await;
}

#[tokio::test]
async fn an_oom_kill_is_a_crash() {
    let _l = DOCKERD.read().await;
    let t = uniq("oom");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    // The shell itself (PID 1) grows past the limit, as a leaking game would.
    let id = run_game(
        &t,
        &t,
        &t,
        &["--memory", "8m", "--memory-swap", "8m"],
        "echo filling memory; x=$(yes | head -c 100000000); echo survived",
    );
    w.running(&id).await;
    let (code, requested, oom, tail) = w.exited(&id).await;
    let docker_says = docker(&["inspect", "-f", "{{.State.OOMKilled}}", &id]);
    assert_eq!(
        (code, requested, oom),
        (137, false, true),
        "dockerd's own State.OOMKilled: {docker_says}"
    );
    assert_eq!(tail, ["filling memory"]);
    w.stop().await;
}

#[tokio::test]
async fn an_operators_docker_stop_is_a_stop_even_when_the_game_is_killed() {
    let _l = DOCKERD.read().await;
    let t = uniq("opstop");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    let id = run_game(&t, &t, &t, &[], "trap '' TERM; while :; do sleep 0.1; done");
    w.running(&id).await;
    docker(&["stop", "-t", "1", &id]);
    let (code, requested, oom, tail) = w.exited(&id).await;
    assert_eq!((code, requested, oom), (137, true, false));
    assert!(tail.is_empty(), "no log tail for a stop");
    w.stop().await;
}

#[tokio::test]
async fn the_watcher_follows_a_replacement_under_the_same_ecs_label() {
    let _l = DOCKERD.read().await;
    let t = uniq("replace");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    let old = run_game(
        &t,
        &format!("{t}-a"),
        &t,
        &[],
        "while :; do sleep 0.1; done",
    );
    w.running(&old).await;
    // A container of another ECS name is not ours.
    run_game(
        &t,
        &format!("{t}-other"),
        &format!("{t}-other"),
        &[],
        "exit 9",
    );
    // ECS replaces the task: the old container is stopped, a new one starts.
    docker(&["stop", "-t", "1", &old]);
    let (_, requested, _, _) = w.exited(&old).await;
    assert!(requested);
    let new = run_game(&t, &format!("{t}-b"), &t, &[], "sleep 1; exit 5");
    w.running(&new).await;
    let (code, requested, _, _) = w.exited(&new).await;
    assert_eq!((code, requested), (5, false));
    w.nothing_for(Duration::from_secs(1)).await;
    w.stop().await;
}

#[tokio::test]
async fn a_container_is_followed_by_its_docker_name_exactly() {
    let _l = DOCKERD.read().await;
    let t = uniq("byname");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(
        SOCKET,
        config(
            ContainerSelector::DockerName(t.clone()),
            Duration::from_secs(5),
            &[],
        ),
    );
    settle().await;
    // Docker's name filters match substrings; the adapter must not.
    run_game(&t, &format!("{t}x"), "none", &[], "exit 8");
    let id = run_game(&t, &t, "none", &[], "sleep 0.5; exit 2");
    w.running(&id).await;
    let (code, requested, _, _) = w.exited(&id).await;
    assert_eq!((code, requested), (2, false));
    w.stop().await;
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("cmct-").tempdir().unwrap()
}

#[tokio::test]
async fn graceful_stop_runs_the_pre_stop_command_then_the_game_saves_and_exits() {
    let _l = DOCKERD.read().await;
    let t = uniq("graceful");
    let _c = Cleanup(t.clone());
    let dir = tempdir();
    let mount = format!("{}:/data", dir.path().display());
    let pre_stop = [
        "sh",
        "-c",
        "echo prestop >> /data/order; echo saving the world; echo warn >&2",
    ];
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(10), &pre_stop));
    settle().await;
    let id = run_game(
        &t,
        &t,
        &t,
        &["-v", &mount],
        "trap 'echo term >> /data/order; echo saved > /data/saved; exit 0' TERM; while :; do sleep 0.1; done",
    );
    w.running(&id).await;
    let report = w.adapter.graceful_stop().await.unwrap();
    assert_eq!(report.container.as_deref(), Some(t.as_str()));
    let pre = report.pre_stop.clone().expect("the pre-stop command ran");
    assert_eq!(pre.exit_code, Some(0));
    assert!(!pre.timed_out);
    assert!(
        pre.output.contains("saving the world") && pre.output.contains("warn"),
        "{pre:?}"
    );
    assert!(report.exited_on_its_own, "{report:?}");
    assert_eq!(report.exit_code, Some(0));
    assert!(report.duration < Duration::from_secs(10), "{report:?}");
    let order = std::fs::read_to_string(dir.path().join("order")).unwrap();
    assert_eq!(
        order, "prestop\nterm\n",
        "the pre-stop command ran before SIGTERM"
    );
    assert!(
        dir.path().join("saved").exists(),
        "the game saved on SIGTERM"
    );
    let (code, requested, _, _) = w.exited(&id).await;
    assert_eq!((code, requested), (0, true));
    w.stop().await;
}

#[tokio::test]
async fn graceful_stop_kills_a_game_that_ignores_sigterm_and_bounds_the_pre_stop_command() {
    let _l = DOCKERD.read().await;
    let t = uniq("gracekill");
    let _c = Cleanup(t.clone());
    // A pre-stop command that hangs (bounded by min(stop_timeout, 60 s) = 2 s), and a game
    // that ignores SIGTERM (killed after stop_timeout = 2 s).
    let pre_stop = ["sh", "-c", "echo started; sleep 30"];
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(2), &pre_stop));
    settle().await;
    let id = run_game(&t, &t, &t, &[], "trap '' TERM; while :; do sleep 0.1; done");
    w.running(&id).await;
    let began = Instant::now();
    let report = w.adapter.graceful_stop().await.unwrap();
    let took = began.elapsed();
    let pre = report.pre_stop.clone().expect("the pre-stop command ran");
    assert!(pre.timed_out && pre.exit_code.is_none(), "{pre:?}");
    assert_eq!(pre.output, "started");
    assert!(!report.exited_on_its_own, "{report:?}");
    assert_eq!(report.exit_code, Some(137));
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let (code, requested, _, _) = w.exited(&id).await;
    assert_eq!((code, requested), (137, true));
    w.stop().await;
}

#[tokio::test]
async fn graceful_stop_exit_caused_by_the_pre_stop_command_is_requested() {
    let _l = DOCKERD.read().await;
    let t = uniq("gracepre");
    let _c = Cleanup(t.clone());
    // The pre-stop command makes the game exit with 1 (as `rcon stop` might): still a stop.
    let pre_stop = ["sh", "-c", "kill -USR1 1; sleep 0.5"];
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &pre_stop));
    settle().await;
    let id = run_game(
        &t,
        &t,
        &t,
        &[],
        "trap 'exit 1' USR1; while :; do sleep 0.1; done",
    );
    w.running(&id).await;
    let report = w.adapter.graceful_stop().await.unwrap();
    assert!(report.exited_on_its_own, "{report:?}");
    assert_eq!(report.exit_code, Some(1));
    let (code, requested, _, tail) = w.exited(&id).await;
    assert_eq!((code, requested), (1, true));
    assert!(tail.is_empty());
    w.stop().await;
}

#[tokio::test]
async fn graceful_stop_without_a_running_container_reports_none() {
    let _l = DOCKERD.read().await;
    let t = uniq("nostop");
    let _c = Cleanup(t.clone());
    let id = run_game(&t, &t, &t, &[], "exit 0");
    docker(&["wait", &id]);
    let adapter =
        DockerContainers::new(SOCKET, config(ecs(&t), Duration::from_secs(5), &["true"])).unwrap();
    let report = adapter.graceful_stop().await.unwrap();
    assert_eq!(report.container, None);
    assert_eq!(report.pre_stop, None);
    assert_eq!(report.exit_code, None);
}

#[tokio::test]
async fn an_unrequested_exit_while_terminating_is_not_a_crash_for_the_core() {
    let _l = DOCKERD.read().await;
    let t = uniq("terminating");
    let _c = Cleanup(t.clone());
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    let id = run_game(&t, &t, &t, &[], "sleep 0.5; exit 3");
    w.running(&id).await;
    let exit = w.next().await;
    assert!(
        matches!(
            exit,
            ContainerEvent::Exited {
                exit_code: 3,
                requested: false,
                ..
            }
        ),
        "{exit:?}"
    );
    w.stop().await;

    let policy = Policy {
        min_packets_per_second: 1.0,
        sample_interval: Duration::from_secs(10),
        idle_after: Duration::from_secs(600),
        boot_grace: Duration::ZERO,
        crashes_before_shutdown: 1,
        max_uptime: None,
        stop_on_max_uptime: false,
        max_uptime_backstop: true,
        scaling: true,
        lifecycle_hook: true,
        dns: false,
        metrics_interval: None,
        launch_hook: false,
        prepare_image: false,
        ready_when: Readiness::ContainerRuns,
        start_within: None,
        unused_after: None,
        wake_budget: None,
    };
    let crashy = |out: &[Action]| {
        out.iter().any(|a| {
            matches!(
                a,
                Action::ScaleToZero(..) | Action::Alert(Alert::Crash { .. })
            )
        })
    };
    let now = Instant::now();
    // Control: in service, the same event is a crash.
    let mut core = Core::new(policy.clone(), now, Duration::from_secs(3600));
    core.handle(Input::Lifecycle(LifecycleState::InService), now);
    let out = core.handle(Input::Container(exit.clone()), now);
    assert!(crashy(&out.actions), "{out:?}");
    // Terminating: the same exit is part of the shutdown.
    let mut core = Core::new(policy, now, Duration::from_secs(3600));
    core.handle(Input::Lifecycle(LifecycleState::Terminating), now);
    let out = core.handle(Input::Container(exit), now);
    assert!(!crashy(&out.actions), "{out:?}");
}

/// A Unix-socket proxy in front of dockerd that can be cut (the event stream breaks and the
/// socket is gone, as when dockerd is down). With `lose_history`, it rewrites the `since` of
/// event requests to the present, as a restarted dockerd (whose event buffer is empty) would
/// answer.
struct Proxy {
    path: PathBuf,
    lose_history: Arc<AtomicBool>,
    cut: std::sync::Mutex<CancellationToken>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Arc<Self> {
        let dir = tempdir();
        let proxy = Arc::new(Self {
            path: dir.path().join("docker.sock"),
            lose_history: Arc::new(AtomicBool::new(false)),
            cut: std::sync::Mutex::new(CancellationToken::new()),
            _dir: dir,
        });
        proxy.listen();
        proxy
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn listen(&self) {
        let listener = UnixListener::bind(&self.path).unwrap();
        let cut = self.cut.lock().unwrap().clone();
        let lose = self.lose_history.clone();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = cut.cancelled() => return,
                    c = listener.accept() => match c { Ok((c, _)) => c, Err(_) => return },
                };
                let (cut, lose) = (cut.clone(), lose.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = cut.cancelled() => {}
                        () = pump(client, lose) => {}
                    }
                });
            }
        });
    }

    /// Breaks every connection and removes the socket.
    fn cut(&self) {
        self.cut.lock().unwrap().cancel();
        let _ = std::fs::remove_file(&self.path);
    }

    fn restore(&self) {
        *self.cut.lock().unwrap() = CancellationToken::new();
        self.listen();
    }
}

async fn pump(client: UnixStream, lose_history: Arc<AtomicBool>) {
    let Ok(upstream) = UnixStream::connect("/var/run/docker.sock").await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut chunk = buf[..n].to_vec();
            if lose_history.load(Ordering::SeqCst) {
                chunk = forget_since(&chunk);
            }
            if uw.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Rewrites `since=...` in an `/events` request line to the present (or to `until`, which
/// Docker requires not to be before `since`).
fn forget_since(chunk: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(chunk);
    let Some(line_end) = text.find("\r\n") else {
        return chunk.to_vec();
    };
    let line = &text[..line_end];
    if !line.starts_with("GET ") || !line.contains("/events?") {
        return chunk.to_vec();
    }
    let Some(start) = line.find("since=") else {
        return chunk.to_vec();
    };
    let end = line[start..]
        .find(['&', ' '])
        .map_or(line.len(), |e| start + e);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let until = line.find("until=").map(|u| {
        let v = &line[u + "until=".len()..];
        v[..v.find(['&', ' ']).unwrap_or(v.len())].to_string()
    });
    let since = until.unwrap_or(now);
    let new_line = format!("{}since={since}{}", &line[..start], &line[end..]);
    format!("{new_line}{}", &text[line_end..]).into_bytes()
}

#[tokio::test]
async fn exits_while_the_stream_is_down_are_replayed_and_classified_exactly() {
    let _l = DOCKERD.read().await;
    let t = uniq("gapreplay");
    let _c = Cleanup(t.clone());
    let proxy = Proxy::start();
    let mut w = Watch::start(
        &proxy.endpoint(),
        config(ecs(&t), Duration::from_secs(5), &[]),
    );
    settle().await;
    let stopped = run_game(
        &t,
        &format!("{t}-a"),
        &t,
        &[],
        "trap '' TERM; while :; do sleep 0.1; done",
    );
    w.running(&stopped).await;
    let crashed = run_game(
        &t,
        &format!("{t}-b"),
        &t,
        &[],
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3",
    );
    w.running(&crashed).await;
    let killed = run_game(
        &t,
        &format!("{t}-c"),
        &t,
        &[],
        "while :; do sleep 0.1; done",
    );
    w.running(&killed).await;

    proxy.cut();
    docker(&["stop", "-t", "1", &stopped]);
    docker(&["exec", &crashed, "touch", "/tmp/go"]);
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &killed]);
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    sleep(Duration::from_secs(1)).await;
    w.nothing_for(Duration::from_millis(500)).await;
    proxy.restore();

    let mut exits = std::collections::HashMap::new();
    for _ in 0..3 {
        match w.next().await {
            ContainerEvent::Exited {
                id,
                exit_code,
                requested,
                ..
            } => {
                exits.insert(id, (exit_code, requested));
            }
            other => panic!("expected exits, got {other:?}"),
        }
    }
    assert_eq!(exits[&stopped], (137, true), "docker stop: a stop");
    assert_eq!(exits[&crashed], (3, false), "a crash");
    assert_eq!(
        exits[&killed],
        (137, false),
        "kill -9 from the host: a crash"
    );
    w.nothing_for(Duration::from_secs(1)).await;
    w.stop().await;
}

#[tokio::test]
async fn a_crash_while_the_stream_is_down_and_its_events_are_lost_is_found_by_the_reconcile() {
    let _l = DOCKERD.read().await;
    let t = uniq("gapreconcile");
    let _c = Cleanup(t.clone());
    let proxy = Proxy::start();
    let mut w = Watch::start(
        &proxy.endpoint(),
        config(ecs(&t), Duration::from_secs(5), &[]),
    );
    settle().await;
    let crashed = run_game(
        &t,
        &format!("{t}-a"),
        &t,
        &[],
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo dying; exit 3",
    );
    w.running(&crashed).await;
    let stopped = run_game(
        &t,
        &format!("{t}-b"),
        &t,
        &[],
        "trap '' TERM; while :; do sleep 0.1; done",
    );
    w.running(&stopped).await;
    let running = run_game(
        &t,
        &format!("{t}-c"),
        &t,
        &[],
        "while :; do sleep 0.1; done",
    );
    w.running(&running).await;

    proxy.cut();
    proxy.lose_history.store(true, Ordering::SeqCst);
    docker(&["exec", &crashed, "touch", "/tmp/go"]);
    // Without its kill event, only the exit code is left: 137 is what a dockerd shutdown
    // gives, so with the events lost it counts as a stop (as after a dockerd restart).
    docker(&["stop", "-t", "1", &stopped]);
    sleep(Duration::from_secs(1)).await;
    proxy.restore();

    let mut exits = std::collections::HashMap::new();
    for _ in 0..2 {
        match w.next().await {
            ContainerEvent::Exited {
                id,
                exit_code,
                requested,
                oom_killed,
                log_tail,
                ..
            } => {
                exits.insert(id, (exit_code, requested, oom_killed, log_tail));
            }
            other => panic!("expected exits, got {other:?}"),
        }
    }
    assert_eq!(
        exits[&crashed],
        (3, false, false, vec!["dying".to_string()])
    );
    assert_eq!(exits[&stopped], (137, true, false, vec![]));
    // The container that kept running is not reported again.
    w.nothing_for(Duration::from_secs(1)).await;
    w.stop().await;
}

fn dockerd_up() -> bool {
    Command::new("docker")
        .args(["info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn dockerd_pids() -> String {
    Command::new("pidof")
        .arg("dockerd")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// Synchronous on purpose: it also runs from a Drop guard after a failed test.
#[allow(clippy::disallowed_methods)]
fn start_dockerd() {
    let log = Path::new("/work/main/tests/.cache/dockerd.log");
    let _ = std::fs::create_dir_all(log.parent().unwrap());
    let cmd = format!(
        "setsid nohup dockerd >> {} 2>&1 < /dev/null &",
        log.display()
    );
    Command::new("sh").args(["-c", &cmd]).status().unwrap();
    for _ in 0..120 {
        if dockerd_up() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("dockerd did not come back; see {}", log.display());
}

/// Makes sure dockerd runs again when the restart test ends, even when it fails.
struct DockerdBack;

impl Drop for DockerdBack {
    #[allow(clippy::disallowed_methods)] // Drop cannot await.
    fn drop(&mut self) {
        if !dockerd_up() {
            for _ in 0..60 {
                if dockerd_pids().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            start_dockerd();
        }
    }
}

#[tokio::test]
async fn a_dockerd_restart_is_never_reported_as_a_crash() {
    let _l = DOCKERD.write().await;
    let t = uniq("dockerd");
    let _back = DockerdBack;
    let _c = Cleanup(t.clone());
    assert!(dockerd_up(), "dockerd must run before the test");
    let mut w = Watch::start(SOCKET, config(ecs(&t), Duration::from_secs(5), &[]));
    settle().await;
    // One dies of SIGTERM (143), one ignores it and is killed after its stop timeout (137).
    let term = run_game(
        &t,
        &format!("{t}-a"),
        &t,
        &[],
        "trap 'exit 143' TERM; while :; do sleep 0.1; done",
    );
    w.running(&term).await;
    let stubborn = run_game(
        &t,
        &format!("{t}-b"),
        &t,
        &["--stop-timeout", "2"],
        "trap '' TERM; while :; do sleep 0.1; done",
    );
    w.running(&stubborn).await;

    let pids = dockerd_pids();
    assert!(!pids.is_empty(), "no dockerd process");
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .args(pids.split_whitespace())
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..120 {
        if dockerd_pids().is_empty() {
            break;
        }
        sleep(Duration::from_millis(500)).await;
    }
    assert!(dockerd_pids().is_empty(), "dockerd did not stop");
    tokio::task::spawn_blocking(start_dockerd).await.unwrap();

    let mut exits = std::collections::HashMap::new();
    for _ in 0..2 {
        match w.next().await {
            ContainerEvent::Exited {
                id,
                exit_code,
                requested,
                oom_killed,
                ..
            } => {
                exits.insert(id, (exit_code, requested, oom_killed));
            }
            other => panic!("expected exits, got {other:?}"),
        }
    }
    assert_eq!(
        exits[&term],
        (143, true, false),
        "stopped by dockerd: requested"
    );
    assert_eq!(
        exits[&stubborn],
        (137, true, false),
        "killed by dockerd: requested"
    );
    w.nothing_for(Duration::from_secs(1)).await;

    // The watcher keeps working after the restart.
    let crash = run_game(&t, &format!("{t}-c"), &t, &[], "sleep 0.5; exit 4");
    w.running(&crash).await;
    let (code, requested, _, _) = w.exited(&crash).await;
    assert_eq!((code, requested), (4, false));
    w.stop().await;
}

// --- The `containers` diagnostic command ---

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_container-manager-agent")
}

/// The save unit's command, as it runs at shutdown when the agent is dead: the same graceful
/// stop as the agent's (pre-stop command, then SIGTERM within stop_timeout), on a real
/// container; then, with the game stopped (the agent's own stop came first), nothing to do.
#[tokio::test]
async fn the_save_game_command_saves_a_running_game_then_finds_nothing_to_save() {
    let _l = DOCKERD.read().await;
    let t = uniq("savegame");
    let _c = Cleanup(t.clone());
    let dir = tempdir();
    let mount = format!("{}:/data", dir.path().display());
    let id = run_game(
        &t,
        &t,
        &t,
        &["-v", &mount],
        "trap 'sleep 2; echo term >> /data/order; echo saved > /data/saved; exit 0' TERM; while :; do sleep 0.1; done",
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[container]\ndocker_name = \"{t}\"\nstop_timeout = \"20s\"\npre_stop_command = [\"sh\", \"-c\", \"echo prestop >> /data/order\"]\n[activity]\nports = [\"udp:2456\"]\n"
        ),
    )
    .unwrap();
    let save = || {
        Command::new(bin())
            .args(["save-game", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = save();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["container"], t.as_str(), "{report}");
    assert_eq!(report["exited_on_its_own"], true, "{report}");
    assert_eq!(report["pre_stop"]["exit_code"], 0, "{report}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("order")).unwrap(),
        "prestop\nterm\n",
        "the pre-stop command, then SIGTERM"
    );
    assert!(
        dir.path().join("saved").exists(),
        "the save took 2 s and was waited for"
    );
    let state = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.ExitCode}}",
        &id,
    ]);
    assert_eq!(state, "false 0");
    // Again: no game container runs, nothing to do, success.
    let out = save();
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["container"], serde_json::Value::Null, "{report}");
    // A config that cannot be read is a config error (78), and nothing is stopped.
    let out = Command::new(bin())
        .args(["save-game", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn the_containers_command_needs_exactly_one_selector() {
    for args in [
        vec![],
        vec!["--docker-name", "a", "--ecs-container-name", "b"],
        vec!["--docker-name", ""],
    ] {
        let out = Command::new(bin())
            .arg("containers")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--docker-name") || err.contains("--ecs-container-name"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn the_containers_command_prints_classified_events_as_json_lines() {
    let _l = DOCKERD.read().await;
    let t = uniq("cli");
    let _c = Cleanup(t.clone());
    let mut child = tokio::process::Command::new(bin())
        .args(["containers", "--docker-name", &t])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    timeout(WAIT, async {
        while let Some(l) = stderr.next_line().await.unwrap() {
            if l.contains("Watching the game container's events.") {
                return;
            }
        }
        panic!("the command ended before watching");
    })
    .await
    .expect("the command starts watching");
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> serde_json::Value {
        let l = timeout(WAIT, stdout.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
    };

    let id = run_game(&t, &t, "none", &[], "echo bye; sleep 0.5; exit 4");
    let running = next().await;
    assert_eq!(running["event"], "running");
    assert_eq!(running["id"], id.as_str());
    assert_eq!(running["id"].as_str().unwrap().len(), 64, "the full id");
    assert_eq!(running["name"], t.as_str());
    humantime::parse_rfc3339(running["time"].as_str().unwrap()).expect("RFC 3339 time");
    let exited = next().await;
    assert_eq!(exited["event"], "exited");
    assert_eq!(exited["id"], id.as_str());
    assert_eq!(exited["exit_code"], 4);
    assert_eq!(exited["crash"], true);
    assert_eq!(exited["log_tail"], serde_json::json!(["bye"]));
    humantime::parse_rfc3339(exited["time"].as_str().unwrap()).expect("RFC 3339 time");

    docker(&["rm", &id]);
    let id = run_game(
        &t,
        &t,
        "none",
        &[],
        "trap '' TERM; while :; do sleep 0.1; done",
    );
    assert_eq!(next().await["event"], "running");
    docker(&["stop", "-t", "1", &id]);
    let exited = next().await;
    assert_eq!(
        (exited["exit_code"].as_i64(), exited["crash"].as_bool()),
        (Some(137), Some(false))
    );

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("it stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    drain.await.unwrap();
}

#[tokio::test]
async fn health_status_and_oom_events_reach_the_diagnostic_stream() {
    use container_manager_agent::container::docker::Observed;
    let _l = DOCKERD.read().await;
    let t = uniq("health");
    let _c = Cleanup(t.clone());
    let adapter =
        DockerContainers::new(SOCKET, config(ecs(&t), Duration::from_secs(5), &[])).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let watching = adapter.observe(tx, cancel.clone());
    let check = async {
        settle().await;
        let id = run_game(
            &t,
            &t,
            &t,
            &[
                "--health-cmd",
                "exit 1",
                "--health-interval",
                "1s",
                "--health-retries",
                "1",
            ],
            "while :; do sleep 0.1; done",
        );
        let mut seen = Vec::new();
        while let Ok(Some(o)) = timeout(WAIT, rx.recv()).await {
            let done = matches!(&o, Observed::Health { status, .. } if status == "unhealthy");
            seen.push(o);
            if done {
                break;
            }
        }
        assert!(
            matches!(&seen[..], [Observed::Running { id: r, .. }, Observed::Health { id: h, .. }] if *r == id && *h == id),
            "{seen:?}"
        );
        cancel.cancel();
    };
    tokio::join!(watching, check);
}

/// Preparing for a warm pool: an image already in the store is not pulled again; one that no
/// registry can give fails with Docker's reason (this machine reaches no registry).
#[tokio::test]
async fn prepare_image_pulls_only_what_is_missing_and_reports_a_failed_pull() {
    let adapter =
        DockerContainers::new(SOCKET, config(ecs("prepare"), Duration::from_secs(5), &[])).unwrap();
    assert!(
        !adapter.prepare_image(IMAGE).await.unwrap(),
        "present: no pull"
    );
    let err = adapter
        .prepare_image("cm-test/not-in-any-registry:0")
        .await
        .expect_err("no registry has it");
    let text = err.to_string();
    assert!(text.contains("pull image"), "{text}");
}
