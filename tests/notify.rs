//! Webhook notifications against a real local HTTPS receiver: each event's body for Discord,
//! Slack and JSON, a 429 honoured, a hanging receiver that delays no scale-in, and a URL that
//! never reaches the logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real time: the receiver is a real TLS server on loopback.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "support_https.rs"]
mod support_https;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use container_manager_agent::activity::{CounterError, PacketCounter};
use container_manager_agent::aws::{
    AwsError, Capacity, DnsRecord, Identity, InstanceMetadata, RevertOutcome, Secret, Secrets,
};
use container_manager_agent::config::{self, WebhookConfig, WebhookKind};
use container_manager_agent::container::{ContainerError, Containers, StopReport};
use container_manager_agent::decide::{
    Alert, ContainerEvent, EventKind, LifecycleState, Problem, StopFacts,
};
use container_manager_agent::notify::http::{HttpPost, Https};
use container_manager_agent::notify::webhook::Webhook;
use container_manager_agent::notify::{self, Context, Delivery, Options, Sink};
use container_manager_agent::run::{self, Adapters, Host, RunOptions, Shutdown};
use serde_json::Value;
use support_https::{Answer, Receiver, pki};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "sEcReT-t0ken-123";

#[derive(Debug)]
struct StaticSecrets(String);
#[async_trait]
impl Secrets for StaticSecrets {
    async fn secret(&self, name: &str) -> Result<Secret, AwsError> {
        if name == "/cm/hook" {
            Ok(Secret::new(self.0.clone()))
        } else {
            Err(AwsError::Invalid(format!("ParameterNotFound: {name}")))
        }
    }
}

fn https() -> Arc<dyn HttpPost> {
    Arc::new(Https::with_ca_file(&pki().0).unwrap())
}

fn hook(kind: WebhookKind, url: &str, parameter: &str) -> Arc<dyn Sink> {
    Arc::new(Webhook::new(
        0,
        WebhookConfig {
            kind,
            url_parameter: parameter.into(),
            events: EventKind::ALL.to_vec(),
        },
        Arc::new(StaticSecrets(url.into())),
        https(),
    ))
}

fn options() -> Options {
    Options {
        context: Context {
            server: "valheim.example.test".into(),
            addresses: vec!["203.0.113.10".into()],
        },
        players_every: Duration::from_secs(10),
        delivery: Delivery {
            backoff: Duration::from_millis(100),
            ..Delivery::default()
        },
        dry_run: false,
    }
}

fn events() -> Vec<Alert> {
    vec![
        Alert::Online {
            uptime: Duration::from_secs(38),
        },
        Alert::Players { online: 2, max: 10 },
        Alert::IdleStop {
            idle_for: Duration::from_secs(420),
            uptime: Duration::from_secs(5400),
            saved: Some(true),
            unused: false,
        },
        Alert::Crash {
            exit_code: 3,
            oom_killed: false,
            crashes: 1,
            container: "game".into(),
            log_tail: vec!["loading world".into(), "fatal: corrupted chunk".into()],
            scaling_in: true,
        },
        Alert::MaxUptime {
            uptime: Duration::from_secs(8 * 3600),
            scaling_in: true,
            unconfirmed_for: None,
        },
        Alert::NeedsOperator(Problem::LifecycleStuck {
            error: "AccessDenied".into(),
        }),
    ]
}

async fn wait_for_posts(r: &Receiver, n: usize, limit: Duration) -> Vec<support_https::Post> {
    let t0 = Instant::now();
    loop {
        let p = r.posts();
        if p.len() >= n || t0.elapsed() > limit {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_events_body_reaches_discord_slack_and_json_receivers() {
    for kind in [WebhookKind::Discord, WebhookKind::Slack, WebhookKind::Json] {
        let r = Receiver::start().await;
        let url = format!("{}/api/webhooks/42/{TOKEN}", r.url_base);
        let (n, running) = notify::start(vec![hook(kind, &url, "/cm/hook")], options());
        for e in events() {
            n.notify(e);
        }
        let posts = wait_for_posts(&r, 6, Duration::from_secs(20)).await;
        running.finish(Duration::from_secs(5)).await;
        assert_eq!(posts.len(), 6, "{kind:?}: {posts:?}");
        for p in &posts {
            assert_eq!(p.method, "POST");
            assert_eq!(p.path, format!("/api/webhooks/42/{TOKEN}"));
        }
        let b: Vec<&Value> = posts.iter().map(|p| &p.body).collect();
        match kind {
            WebhookKind::Discord => {
                let title = |i: usize| b[i]["embeds"][0]["title"].as_str().unwrap().to_string();
                assert_eq!(title(0), "valheim.example.test is up");
                let fields = b[0]["embeds"][0]["fields"].to_string();
                assert!(
                    fields.contains("203.0.113.10") && fields.contains("38s"),
                    "{fields}"
                );
                assert_eq!(title(1), "valheim.example.test: 2 players online");
                assert_eq!(title(2), "valheim.example.test stopped: nobody was playing");
                assert!(
                    b[2]["embeds"][0]["description"]
                        .as_str()
                        .unwrap()
                        .contains("The world was saved")
                );
                assert_eq!(title(3), "valheim.example.test: game crashed (exit 3)");
                assert!(b[3].to_string().contains("fatal: corrupted chunk"));
                assert_eq!(title(4), "valheim.example.test: up for 8h");
                assert_eq!(title(5), "valheim.example.test: shutdown step failing");
                assert!(
                    b.iter()
                        .all(|x| x["allowed_mentions"]["parse"] == serde_json::json!([]))
                );
            }
            WebhookKind::Slack => {
                let header = |i: usize| {
                    b[i]["blocks"][0]["text"]["text"]
                        .as_str()
                        .unwrap()
                        .to_string()
                };
                assert_eq!(header(0), "valheim.example.test is up");
                assert!(
                    b[0]["text"]
                        .as_str()
                        .unwrap()
                        .starts_with("valheim.example.test is up: ")
                );
                assert_eq!(
                    header(2),
                    "valheim.example.test stopped: nobody was playing"
                );
                assert!(b[3].to_string().contains("fatal: corrupted chunk"));
                assert!(b.iter().all(|x| x["blocks"][0]["type"] == "header"));
            }
            WebhookKind::Json => {
                let ev: Vec<&str> = b.iter().map(|x| x["event"].as_str().unwrap()).collect();
                assert_eq!(
                    ev,
                    [
                        "online",
                        "players",
                        "idle_stop",
                        "crash",
                        "max_uptime",
                        "needs_operator"
                    ]
                );
                assert_eq!(b[0]["data"]["wake_seconds"], 38.0);
                assert_eq!(b[0]["data"]["addresses"][0], "203.0.113.10");
                assert_eq!(b[1]["data"]["players"], 2);
                assert_eq!(b[2]["data"]["saved"], true);
                assert_eq!(b[3]["data"]["exit_code"], 3);
                assert_eq!(b[5]["data"]["problem"], "lifecycle_stuck");
                assert!(b.iter().all(|x| x["server"] == "valheim.example.test"));
            }
        }
    }
}

#[tokio::test]
async fn a_429_is_honoured_from_discords_body_and_from_retry_after() {
    let r = Receiver::start().await;
    r.script(vec![
        Answer::Status(
            429,
            None,
            r#"{"message":"You are being rate limited.","retry_after":0.8,"global":false}"#.into(),
        ),
        Answer::Status(204, None, String::new()),
        Answer::Status(429, Some("2".into()), "slow down".into()),
    ]);
    let url = format!("{}/hook/{TOKEN}", r.url_base);
    let (n, running) = notify::start(
        vec![hook(WebhookKind::Discord, &url, "/cm/hook")],
        options(),
    );
    n.notify(events().remove(0));
    let posts = wait_for_posts(&r, 2, Duration::from_secs(10)).await;
    assert_eq!(posts.len(), 2);
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_millis(800),
        "retried after {waited:?}"
    );
    n.notify(events().remove(2));
    let posts = wait_for_posts(&r, 4, Duration::from_secs(10)).await;
    running.finish(Duration::from_secs(5)).await;
    assert_eq!(posts.len(), 4);
    let waited = posts[3].at - posts[2].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(posts[3].body, posts[2].body, "the same message again");
}

#[tokio::test]
async fn a_400_is_not_retried_and_attempts_are_bounded() {
    let r = Receiver::start().await;
    r.script(vec![
        Answer::Status(400, None, r#"{"code":50006}"#.into()),
        Answer::Status(500, None, String::new()),
        Answer::Status(500, None, String::new()),
        Answer::Status(500, None, String::new()),
        Answer::Status(500, None, String::new()),
    ]);
    let url = format!("{}/hook/{TOKEN}", r.url_base);
    let (n, running) = notify::start(vec![hook(WebhookKind::Json, &url, "/cm/hook")], options());
    n.notify(events().remove(0));
    n.notify(events().remove(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.finish(Duration::from_secs(5)).await;
    // One post for the 400 (dropped at once), four attempts for the 500s.
    assert_eq!(r.posts().len(), 5, "{:?}", r.posts());
}

// --- The run loop with a receiver that never answers. ---------------------------------------

#[derive(Debug, Default)]
struct World {
    calls: Vec<(Instant, String)>,
    lifecycle: Option<LifecycleState>,
}
type Shared = Arc<Mutex<World>>;
fn record(w: &Shared, what: &str) {
    w.lock().unwrap().calls.push((Instant::now(), what.into()));
}

#[derive(Debug)]
struct Quiet;
impl PacketCounter for Quiet {
    fn take(&mut self) -> Result<Vec<u64>, CounterError> {
        Ok(vec![0])
    }
}

#[derive(Debug)]
struct Game(Shared);
#[async_trait]
impl Containers for Game {
    async fn watch(&self, events: mpsc::Sender<ContainerEvent>, cancel: CancellationToken) {
        let _ = events
            .send(ContainerEvent::Running {
                id: "c0ffee".into(),
                name: "game".into(),
            })
            .await;
        cancel.cancelled().await;
    }
    async fn graceful_stop(&self) -> Result<StopReport, ContainerError> {
        record(&self.0, "graceful stop");
        Ok(StopReport {
            container: Some("game".into()),
            pre_stop: None,
            exited_on_its_own: true,
            exit_code: Some(0),
            duration: Duration::from_millis(10),
        })
    }
    async fn prepare_image(&self, _: &str) -> Result<bool, ContainerError> {
        Ok(false)
    }
}

#[derive(Debug)]
struct Cloud(Shared);
#[async_trait]
impl InstanceMetadata for Cloud {
    async fn identity(&self) -> Result<Identity, AwsError> {
        Err(AwsError::Invalid("unused".into()))
    }
    async fn lifecycle_state(&self) -> Result<LifecycleState, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .lifecycle
            .clone()
            .unwrap_or(LifecycleState::InService))
    }
    async fn spot_interruption(&self) -> Result<bool, AwsError> {
        Ok(false)
    }
}
#[async_trait]
impl DnsRecord for Cloud {
    async fn point_here(&self) -> Result<String, AwsError> {
        record(&self.0, "dns upsert");
        Ok("203.0.113.10".into())
    }
    async fn revert(&self) -> Result<RevertOutcome, AwsError> {
        record(&self.0, "dns revert");
        Ok(RevertOutcome::Reverted)
    }
}
#[async_trait]
impl Capacity for Cloud {
    async fn scale_to_zero(&self) -> Result<(), AwsError> {
        record(&self.0, "set desired 0");
        self.0.lock().unwrap().lifecycle = Some(LifecycleState::Terminating);
        Ok(())
    }
    async fn complete_lifecycle(&self) -> Result<(), AwsError> {
        record(&self.0, "complete lifecycle");
        Ok(())
    }
    async fn complete_launch(&self) -> Result<(), AwsError> {
        Ok(())
    }
    async fn heartbeat(&self) -> Result<(), AwsError> {
        Ok(())
    }
    async fn record_unused_wake(&self, _at: u64) -> Result<u32, AwsError> {
        record(&self.0, "record unused wake");
        Ok(1)
    }
    async fn clear_unused_wakes(&self) -> Result<(), AwsError> {
        record(&self.0, "clear unused wakes");
        Ok(())
    }
    async fn record_stop(
        &self,
        _at: u64,
        reason: &str,
        _facts: StopFacts,
        _detail: &str,
    ) -> Result<(), AwsError> {
        record(&self.0, &format!("record stop {reason}"));
        Ok(())
    }
    async fn record_wake_outcome(
        &self,
        _at: u64,
        _minutes: u64,
        joined: bool,
    ) -> Result<(), AwsError> {
        record(&self.0, &format!("record wake joined={joined}"));
        Ok(())
    }
    async fn record_online(&self, _at: u64) -> Result<(), AwsError> {
        record(&self.0, "record online");
        Ok(())
    }
}

#[derive(Debug)]
struct FakeHost;
#[async_trait::async_trait]
impl Host for FakeHost {
    fn uptime(&self) -> Duration {
        Duration::from_secs(60)
    }
    async fn system_stopping(&self) -> bool {
        false
    }
}

const SAMPLE: Duration = Duration::from_millis(200);
const IDLE_AFTER: Duration = Duration::from_secs(2);

fn agent_config() -> config::Config {
    config::parse(
        "agent.toml",
        r#"
[container]
docker_name = "game"
[activity]
ports = ["udp:2456"]
sample_interval = "200ms"
idle_after = "2s"
boot_grace = "0s"
keep_awake_file = "/nonexistent/container-manager-test/keep-awake"
[dns]
hosted_zone_id = "Z1"
record_name = "valheim.example.test"
[scaling]
lifecycle_hook = "drain"
[[notify.webhook]]
kind = "discord"
url_parameter = "/cm/hook"
events = ["online", "players", "idle_stop", "crash", "max_uptime", "needs_operator"]
"#,
    )
    .unwrap()
}

/// Runs the whole idle story with the webhook pointing at `url`; returns the world, when the
/// agent started, and how long it ran.
async fn idle_story(url: &str) -> (World, Instant, Duration) {
    let w: Shared = Arc::default();
    let cloud = Arc::new(Cloud(w.clone()));
    let adapters = Adapters {
        counter: Ok(Box::new(Quiet)),
        probe: None,
        containers: Some(Arc::new(Game(w.clone()))),
        metadata: Some(cloud.clone()),
        dns: Some(cloud.clone()),
        capacity: Some(cloud.clone()),
        metrics: None,
        alerts: None,
        secrets: Some(Arc::new(StaticSecrets(url.into()))),
        http: Some(https()),
        problems: vec![],
        addresses: vec!["203.0.113.10".into()],
        decision_log: None,
        host: Arc::new(FakeHost),
    };
    let t0 = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        run::run(
            agent_config(),
            adapters,
            RunOptions::default(),
            Shutdown::default(),
        ),
    )
    .await
    .expect("the agent did not finish");
    result.unwrap();
    let took = t0.elapsed();
    let world = std::mem::take(&mut *w.lock().unwrap());
    (world, t0, took)
}

fn at(w: &World, t0: Instant, what: &str) -> Duration {
    let (t, _) = w
        .calls
        .iter()
        .find(|(_, c)| c == what)
        .unwrap_or_else(|| panic!("no {what:?} in {:?}", w.calls));
    *t - t0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_delays_no_scale_in_and_no_lifecycle_completion() {
    let r = Receiver::start().await;
    r.script((0..20).map(|_| Answer::Hang).collect());
    let (w, t0, took) = idle_story(&format!("{}/hook/{TOKEN}", r.url_base)).await;
    let dns = at(&w, t0, "dns upsert");
    let scale = at(&w, t0, "set desired 0");
    let complete = at(&w, t0, "complete lifecycle");
    eprintln!(
        "HANGING RECEIVER dns {dns:.2?}, scale-in {scale:.2?}, lifecycle {complete:.2?}, agent ended {took:.2?}"
    );
    // The game is quiet from the start: idle after IDLE_AFTER, seen at the next sample. The
    // online notification went to a receiver that never answers (each attempt waits 10 s), and
    // the scale-in still lands within one sample interval of that, as without webhooks.
    assert!(
        scale <= dns + IDLE_AFTER + SAMPLE * 2,
        "scale-in at {scale:?} (dns at {dns:?})"
    );
    // The termination is seen at the next metadata poll; the save and the completion follow
    // at once.
    assert!(
        complete < scale + run::METADATA_POLL + Duration::from_secs(1),
        "lifecycle at {complete:?}"
    );
    // After the completion, queued notifications get at most NOTIFY_FLUSH, whatever the
    // receiver does.
    assert!(
        took < complete + run::NOTIFY_FLUSH + Duration::from_secs(2),
        "the agent ran {took:?}"
    );
    assert!(!r.posts().is_empty(), "the receiver got the online post");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_story_posts_online_then_idle_stop() {
    let r = Receiver::start().await;
    let (w, t0, _) = idle_story(&format!("{}/hook/{TOKEN}", r.url_base)).await;
    let posts = wait_for_posts(&r, 2, Duration::from_secs(5)).await;
    let titles: Vec<&str> = posts
        .iter()
        .map(|p| p.body["embeds"][0]["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "valheim.example.test is up",
            "valheim.example.test stopped: nobody was playing"
        ]
    );
    // Told after the save, not when the scale-in was asked for.
    let saved = at(&w, t0, "graceful stop");
    assert!(
        posts[1].at - t0 >= saved,
        "{:?} < {saved:?}",
        posts[1].at - t0
    );
}

// --- The URL never reaches the logs. ---------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_url_never_reaches_the_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = Receiver::start().await;
            // The receiver echoes the path back in its error body.
            r.script(vec![
                Answer::Status(
                    404,
                    None,
                    format!(r#"{{"error":"no webhook /hook/{TOKEN}"}}"#),
                ),
                Answer::Status(503, None, format!("down: /hook/{TOKEN}")),
            ]);
            let good = format!("{}/hook/{TOKEN}", r.url_base);
            let refused = format!("https://127.0.0.1:1/hook/{TOKEN}");
            let plain = format!("http://127.0.0.1:1/hook/{TOKEN}");
            let sinks = vec![
                hook(WebhookKind::Discord, &good, "/cm/hook"),
                hook(WebhookKind::Slack, &refused, "/cm/hook"),
                hook(WebhookKind::Json, &plain, "/cm/hook"),
                hook(WebhookKind::Json, &good, "/cm/missing"),
            ];
            let (n, running) = notify::start(sinks, options());
            n.notify(events().remove(0));
            n.notify(events().remove(3));
            tokio::time::sleep(Duration::from_secs(3)).await;
            running.finish(Duration::from_secs(2)).await;
            let (n, running) = notify::start(
                vec![hook(WebhookKind::Discord, &good, "/cm/hook")],
                Options {
                    dry_run: true,
                    ..options()
                },
            );
            n.notify(events().remove(0));
            tokio::time::sleep(Duration::from_millis(200)).await;
            running.finish(Duration::from_secs(1)).await;
        });
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(TOKEN), "the URL leaked:\n{text}");
    // The failures were logged, by target and reason.
    for needle in [
        "HTTP 404",
        "HTTP 503",
        "https:// URL",
        "/cm/missing",
        "webhook_unavailable",
        "alert_dropped",
        "dry_run",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}
