//! Integration tests: the AWS adapters against moto, through the test-side shim
//! (`tests/shim/awsshim.py`, see `tests/support_aws.rs`). Every side effect is read back from
//! moto (or, for the lifecycle actions moto lacks, from the shim's record of them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support_aws.rs"]
mod support_aws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use container_manager_agent::activity::{CounterError, PacketCounter};
use container_manager_agent::aws::{AlertMessage, BuildOptions, RevertOutcome, build_with};
use container_manager_agent::config::{self, Config};
use container_manager_agent::container::{ContainerError, Containers, StopReport};
use container_manager_agent::decide::{Alert, ContainerEvent, MetricsBatch};
use container_manager_agent::notify::{Context, Message};
use container_manager_agent::run::{self, Adapters, Host, RunError, RunOptions, Shutdown};

use support_aws::{PUBLIC_IP, RECORD, Shim, World, eventually, unix_now};

const NAMESPACE: &str = "GameTest";

// ---------------------------------------------------------------------------------------------
// Fakes for what is not AWS.
// ---------------------------------------------------------------------------------------------

/// Returns the same scripted count for the one port spec on every sample.
#[derive(Debug, Clone)]
struct Counter(Arc<AtomicU64>);

impl PacketCounter for Counter {
    fn take(&mut self) -> Result<Vec<u64>, CounterError> {
        Ok(vec![self.0.load(Ordering::SeqCst)])
    }
}

/// A game container that runs until stopped; its graceful stop takes `stop_takes`.
#[derive(Debug)]
struct Game {
    stop_takes: Duration,
    /// (start, end) of each graceful stop, in Unix seconds.
    stops: Mutex<Vec<(f64, f64)>>,
}

impl Game {
    fn new(stop_takes: Duration) -> Arc<Self> {
        Arc::new(Self {
            stop_takes,
            stops: Mutex::new(Vec::new()),
        })
    }

    fn stops(&self) -> Vec<(f64, f64)> {
        self.stops.lock().unwrap().clone()
    }
}

#[async_trait]
impl Containers for Game {
    async fn watch(&self, events: mpsc::Sender<ContainerEvent>, cancel: CancellationToken) {
        let _ = events
            .send(ContainerEvent::Running {
                id: "0123456789abcdef".into(),
                name: "game".into(),
            })
            .await;
        cancel.cancelled().await;
    }

    async fn graceful_stop(&self) -> Result<StopReport, ContainerError> {
        let start = unix_now();
        sleep(self.stop_takes).await;
        self.stops.lock().unwrap().push((start, unix_now()));
        Ok(StopReport {
            container: Some("game".into()),
            pre_stop: None,
            exited_on_its_own: true,
            exit_code: Some(0),
            duration: self.stop_takes,
        })
    }

    async fn prepare_image(&self, _image: &str) -> Result<bool, ContainerError> {
        Ok(false)
    }
}

#[derive(Debug)]
struct FakeHost;

#[async_trait::async_trait]
impl Host for FakeHost {
    fn uptime(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn system_stopping(&self) -> bool {
        false
    }
}

fn config(world: &World, ipv6: bool) -> Config {
    config::parse("agent.toml", &config_text(world, ipv6, "1s")).unwrap()
}

fn config_text(world: &World, ipv6: bool, idle_after: &str) -> String {
    format!(
        r#"
[container]
docker_name = "game"
stop_timeout = "4s"
[activity]
ports = ["udp:2456"]
sample_interval = "200ms"
idle_after = "{idle_after}"
boot_grace = "0s"
keep_awake_file = "/nonexistent/container-manager-test/keep-awake"
[dns]
hosted_zone_id = "{zone}"
record_name = "{RECORD}"
ttl = 60
unavailable_ipv4 = "0.0.0.0"
ipv6 = {ipv6}
[scaling]
lifecycle_hook = "{hook}"
[metrics]
namespace = "{NAMESPACE}"
interval = "1s"
[alerts]
sns_topic_arn = "{topic}"
"#,
        zone = world.zone_id,
        hook = world.hook,
        topic = world.topic_arn,
    )
}

/// A running agent: `run::run` with the real AWS adapters on a task.
struct Agent {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
    game: Arc<Game>,
    packets: Arc<AtomicU64>,
}

impl Agent {
    async fn start(shim: &Shim, config: Config, game: Arc<Game>, packets: u64) -> Agent {
        let cloud = shim.adapters(&config).await;
        assert!(cloud.identity.is_some(), "IMDS identity was not read");
        let packets = Arc::new(AtomicU64::new(packets));
        let adapters = Adapters {
            counter: Ok(Box::new(Counter(packets.clone()))),
            probe: None,
            containers: Some(game.clone()),
            metadata: cloud.metadata,
            dns: cloud.dns,
            capacity: cloud.capacity,
            metrics: cloud.metrics,
            alerts: cloud.alerts,
            secrets: cloud.secrets,
            http: None,
            problems: vec![],
            addresses: vec![],
            decision_log: None,
            host: Arc::new(FakeHost),
        };
        let shutdown = Shutdown::default();
        let task = tokio::spawn(run::run(
            config,
            adapters,
            RunOptions::default(),
            shutdown.clone(),
        ));
        Agent {
            shutdown,
            task,
            game,
            packets,
        }
    }

    /// Waits for `run` to return by itself.
    async fn finished(self, limit: Duration) -> Result<(), RunError> {
        tokio::time::timeout(limit, self.task)
            .await
            .unwrap_or_else(|_| panic!("the agent did not finish within {limit:?}"))
            .unwrap()
    }

    /// SIGTERM: a graceful agent stop.
    async fn stop(self) -> Result<(), RunError> {
        self.shutdown.graceful.cancel();
        self.finished(Duration::from_secs(60)).await
    }
}

async fn record_is(shim: &Shim, world: &World, rtype: &str, want: &str) -> (i64, Vec<String>) {
    eventually(
        &format!("{rtype} record = {want}"),
        Duration::from_secs(20),
        || async {
            shim.record(world, rtype)
                .await
                .filter(|(_, v)| v == &vec![want.to_string()])
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Boot, termination, guarded revert, warm pool.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_points_the_record_here() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    shim.imds(json!({"ipv6": "2001:db8::7"})).await;
    let config = config(&world, true);
    assert_eq!(shim.record(&world, "A").await, None);
    let agent = Agent::start(&shim, config, Game::new(Duration::ZERO), 100).await;

    let (ttl, _) = record_is(&shim, &world, "A", PUBLIC_IP).await;
    assert_eq!(ttl, 60);
    let (ttl6, _) = record_is(&shim, &world, "AAAA", "2001:db8::7").await;
    assert_eq!(ttl6, 60);
    // The record is visible as soon as the change is made; the agent then polls for INSYNC.
    eventually(
        "INSYNC polled (GetChange)",
        Duration::from_secs(10),
        || async {
            let ops = shim.operations().await;
            ops.iter().any(|o| o == "GetChange").then_some(())
        },
    )
    .await;

    agent.stop().await.unwrap();
    // An agent stop (not a termination) leaves the record pointing here.
    assert_eq!(shim.record(&world, "A").await.unwrap().1, vec![PUBLIC_IP]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_reverts_the_record_and_completes_the_lifecycle_action() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let agent = Agent::start(&shim, config(&world, false), Game::new(Duration::ZERO), 100).await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;

    shim.imds(json!({"target-lifecycle-state": "Terminated"}))
        .await;
    let game = agent.game.clone();
    agent.finished(Duration::from_secs(60)).await.unwrap();

    let (ttl, values) = shim.record(&world, "A").await.unwrap();
    assert_eq!((ttl, values), (60, vec!["0.0.0.0".to_string()]));
    assert_eq!(
        game.stops().len(),
        1,
        "the game was not stopped exactly once"
    );
    let completions: Vec<Value> = shim
        .lifecycle_actions()
        .await
        .into_iter()
        .filter(|a| a["action"] == "CompleteLifecycleAction")
        .collect();
    assert_eq!(completions.len(), 1, "{completions:?}");
    // The final metrics flush arrived, with the wake's outcome: one wake, and a player came
    // (the counter reads 100 packets a sample).
    let metrics = shim.metrics(NAMESPACE).await;
    assert!(
        metrics.iter().any(|m| m["name"] == "AgentHeartbeat"),
        "{metrics:?}"
    );
    let wake = &metric(&metrics, "WakeJoined")["datapoints"][0];
    assert_eq!(
        (wake["count"].as_f64(), wake["sum"].as_f64()),
        (Some(1.0), Some(1.0)),
        "{wake:?}"
    );
    // And on the group, for `status`: "<end>:<minutes up>:1" (the fake host is up 1 h).
    let g = shim.ctl("group", json!({"name": world.group})).await;
    let kept = g["tags"]["container-manager:wakes"]
        .as_str()
        .unwrap_or_default();
    let fields: Vec<&str> = kept.split(':').collect();
    assert!(
        matches!(fields.as_slice(), [at, minutes, "1"]
            if at.parse::<u64>().is_ok_and(|t| t + 60 > unix_now() as u64)
                && minutes.parse::<u64>().is_ok_and(|m| (60..=62).contains(&m))),
        "the wakes tag: {kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_leaves_a_newer_instances_record_alone() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let config = config(&world, false);
    let agent = Agent::start(&shim, config.clone(), Game::new(Duration::ZERO), 100).await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;

    // A newer instance took the name.
    shim.upsert(&world, "A", 60, "203.0.113.9").await;
    shim.imds(json!({"target-lifecycle-state": "Terminated"}))
        .await;
    agent.finished(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        shim.record(&world, "A").await.unwrap().1,
        vec!["203.0.113.9"]
    );

    // The adapter says why it left it alone.
    let cloud = shim.adapters(&config).await;
    let outcome = cloud.dns.unwrap().revert().await.unwrap();
    assert_eq!(
        outcome,
        RevertOutcome::NotOurs {
            current: Some("203.0.113.9".into())
        }
    );
    assert_eq!(
        shim.record(&world, "A").await.unwrap().1,
        vec!["203.0.113.9"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_is_exact_and_idempotent() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let cloud = shim.adapters(&config(&world, true)).await;
    shim.imds(json!({"ipv6": "2001:db8::7"})).await;
    let dns = cloud.dns.unwrap();
    // The identity was read before IPv6 was set: only A is managed.
    assert_eq!(dns.point_here().await.unwrap(), PUBLIC_IP);
    assert_eq!(dns.revert().await.unwrap(), RevertOutcome::Reverted);
    assert_eq!(
        shim.record(&world, "A").await.unwrap(),
        (60, vec!["0.0.0.0".into()])
    );
    // A retried revert whose first answer was lost still reports success.
    assert_eq!(dns.revert().await.unwrap(), RevertOutcome::Reverted);

    // With IPv6: the AAAA record is deleted (no placeholder), a foreign one is kept.
    let cloud = shim.adapters(&config(&world, true)).await;
    let dns = cloud.dns.unwrap();
    assert_eq!(
        dns.point_here().await.unwrap(),
        format!("{PUBLIC_IP},2001:db8::7")
    );
    assert_eq!(dns.revert().await.unwrap(), RevertOutcome::Reverted);
    assert_eq!(shim.record(&world, "AAAA").await, None);
    dns.point_here().await.unwrap();
    shim.upsert(&world, "AAAA", 60, "2001:db8::99").await;
    assert_eq!(dns.revert().await.unwrap(), RevertOutcome::Reverted);
    assert_eq!(
        shim.record(&world, "AAAA").await.unwrap().1,
        vec!["2001:db8::99"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmed_instance_changes_no_dns() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    shim.imds(json!({"target-lifecycle-state": "Warmed:Running"}))
        .await;
    let agent = Agent::start(&shim, config(&world, false), Game::new(Duration::ZERO), 0).await;
    // Idle for well over idle_after, and a few metadata polls.
    sleep(Duration::from_secs(6)).await;
    assert!(!agent.task.is_finished());
    let game = agent.game.clone();
    agent.stop().await.unwrap();
    let ops = shim.operations().await;
    assert!(
        !ops.iter().any(|o| o == "ChangeResourceRecordSets"),
        "{ops:?}"
    );
    assert!(!ops.iter().any(|o| o == "SetDesiredCapacity"), "{ops:?}");
    assert_eq!(shim.record(&world, "A").await, None);
    assert_eq!(shim.desired_capacity(&world).await, 1);
    assert!(game.stops().is_empty());
    // The agent was alive and publishing the whole time.
    assert!(ops.iter().any(|o| o == "PutMetricData"), "{ops:?}");
}

// ---------------------------------------------------------------------------------------------
// Lifecycle hook and Spot.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_heartbeats_during_a_slow_save_then_completes() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    shim.upsert(&world, "A", 60, PUBLIC_IP).await;
    shim.imds(json!({"target-lifecycle-state": "Terminated"}))
        .await;
    // stop_timeout 4 s: a heartbeat every second; the save takes 3.5 s.
    let agent = Agent::start(
        &shim,
        config(&world, false),
        Game::new(Duration::from_millis(3500)),
        100,
    )
    .await;
    let game = agent.game.clone();
    agent.finished(Duration::from_secs(60)).await.unwrap();

    let stops = game.stops();
    assert_eq!(stops.len(), 1);
    let (stop_start, stop_end) = stops[0];
    let actions = shim.lifecycle_actions().await;
    let beats: Vec<&Value> = actions
        .iter()
        .filter(|a| a["action"] == "RecordLifecycleActionHeartbeat")
        .collect();
    let done: Vec<&Value> = actions
        .iter()
        .filter(|a| a["action"] == "CompleteLifecycleAction")
        .collect();
    assert!(beats.len() >= 2, "too few heartbeats: {actions:?}");
    for b in &beats {
        let t = b["time"].as_f64().unwrap();
        assert!(
            t >= stop_start - 0.5 && t <= stop_end + 0.5,
            "heartbeat outside the stop: {b} vs {stops:?}"
        );
        assert_eq!(
            (
                b["hook"].as_str(),
                b["group"].as_str(),
                b["instance_id"].as_str()
            ),
            (
                Some(world.hook.as_str()),
                Some(world.group.as_str()),
                Some(world.instance_id())
            )
        );
    }
    assert_eq!(done.len(), 1, "{actions:?}");
    let c = done[0];
    assert_eq!(c["result"], "CONTINUE");
    assert_eq!(c["hook"], world.hook.as_str());
    assert_eq!(c["group"], world.group.as_str());
    assert_eq!(c["instance_id"], world.instance_id());
    assert!(
        c["time"].as_f64().unwrap() >= stop_end,
        "completed before the save ended"
    );
    // The record held our address: reverted before the completion.
    assert_eq!(shim.record(&world, "A").await.unwrap().1, vec!["0.0.0.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_notice_stops_the_game_gracefully() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let agent = Agent::start(
        &shim,
        config(&world, false),
        Game::new(Duration::from_millis(500)),
        100,
    )
    .await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;
    assert!(agent.game.stops().is_empty());

    shim.imds(
        json!({"spot-instance-action": {"action": "terminate", "time": "2026-11-22T10:00:00Z"}}),
    )
    .await;
    let game = agent.game.clone();
    eventually(
        "graceful stop after the Spot notice",
        Duration::from_secs(15),
        || async { (!game.stops().is_empty()).then_some(()) },
    )
    .await;
    // The way out also hands the name back.
    record_is(&shim, &world, "A", "0.0.0.0").await;
    // A Spot notice is not a termination hook: no lifecycle action, no scale-in.
    assert!(shim.lifecycle_actions().await.is_empty());
    assert_eq!(shim.desired_capacity(&world).await, 1);
    agent.stop().await.unwrap();
    assert_eq!(game.stops().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Metrics and alerts.
// ---------------------------------------------------------------------------------------------

fn metric<'a>(metrics: &'a [Value], name: &str) -> &'a Value {
    metrics
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {metrics:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_values_units_and_group_dimension() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let cloud = shim.adapters(&config(&world, false)).await;
    let metrics = cloud.metrics.unwrap();
    metrics
        .publish(&MetricsBatch {
            inbound_packets: Some(1234),
            players_online: Some(3),
            idle_seconds: 12.5,
            container_running: true,
            wake: None,
        })
        .await
        .unwrap();

    let got = shim.metrics(NAMESPACE).await;
    assert_eq!(got.len(), 5, "{got:?}");
    for (name, value, unit) in [
        ("InboundPackets", 1234.0, "Count"),
        ("PlayersOnline", 3.0, "Count"),
        ("IdleSeconds", 12.5, "Seconds"),
        ("ContainerRunning", 1.0, "Count"),
        ("AgentHeartbeat", 1.0, "Count"),
    ] {
        let m = metric(&got, name);
        assert_eq!(
            m["dimensions"],
            json!({"AutoScalingGroupName": world.group}),
            "{m}"
        );
        let points = m["datapoints"].as_array().unwrap();
        assert_eq!(points.len(), 1, "{m}");
        assert_eq!(points[0]["sum"].as_f64(), Some(value), "{m}");
        assert_eq!(points[0]["count"].as_f64(), Some(1.0), "{m}");
        assert_eq!(points[0]["unit"], unit, "{m}");
    }
    // It went over the wire as rpc-v2-cbor (the shim's translation), not moto's query API.
    let ops = shim.get("/_shim/requests").await;
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .any(|r| r["op"] == "PutMetricData"
                && r["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("/service/GraniteServiceVersion20100801/")),
        "{ops}"
    );

    // Unknown values are left out rather than published as 0.
    metrics
        .publish(&MetricsBatch {
            inbound_packets: None,
            players_online: None,
            idle_seconds: 1.0,
            container_running: false,
            wake: None,
        })
        .await
        .unwrap();
    let got = shim.metrics(NAMESPACE).await;
    assert_eq!(
        metric(&got, "InboundPackets")["datapoints"][0]["count"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        metric(&got, "IdleSeconds")["datapoints"][0]["count"].as_f64(),
        Some(2.0)
    );
    assert_eq!(
        metric(&got, "ContainerRunning")["datapoints"][0]["sum"].as_f64(),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_instance_publishes_with_its_instance_id() {
    let shim = Shim::start().await;
    let _world = shim.world().await;
    // An instance outside any group.
    shim.imds(json!({"instance-id": "i-0standalone0000001", "target-lifecycle-state": null}))
        .await;
    let text = r#"
[container]
docker_name = "game"
[activity]
ports = ["udp:2456"]
[metrics]
namespace = "GameTest"
"#;
    let cloud = shim
        .adapters(&config::parse("agent.toml", text).unwrap())
        .await;
    assert!(cloud.dns.is_none() && cloud.capacity.is_none() && cloud.alerts.is_none());
    assert_eq!(
        cloud
            .metadata
            .as_ref()
            .unwrap()
            .lifecycle_state()
            .await
            .unwrap(),
        container_manager_agent::decide::LifecycleState::Standalone
    );
    cloud
        .metrics
        .unwrap()
        .publish(&MetricsBatch {
            inbound_packets: Some(1),
            players_online: None,
            idle_seconds: 0.0,
            container_running: true,
            wake: None,
        })
        .await
        .unwrap();
    let got = shim.metrics(NAMESPACE).await;
    assert_eq!(got.len(), 4, "{got:?}");
    for m in &got {
        assert_eq!(
            m["dimensions"],
            json!({"InstanceId": "i-0standalone0000001"}),
            "{m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_through_sns() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let config = config(&world, false);
    let cloud = shim.adapters(&config).await;
    let alerts = cloud.alerts.unwrap();
    let cx = Context {
        server: RECORD.into(),
        addresses: vec![],
    };
    let sent: Vec<AlertMessage> = [
        Alert::IdleStop {
            idle_for: Duration::from_secs(420),
            uptime: Duration::from_secs(3600),
            saved: Some(true),
            unused: false,
        },
        Alert::Crash {
            exit_code: 137,
            oom_killed: true,
            crashes: 2,
            container: "game".into(),
            log_tail: vec!["line one".into(), "line two".into()],
            scaling_in: true,
        },
    ]
    .iter()
    .map(|a| {
        let (subject, body) = Message::new(a, &cx).sns();
        AlertMessage { subject, body }
    })
    .collect();
    for a in &sent {
        alerts.send(a).await.unwrap();
    }
    let got = shim.messages(&world).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for (a, m) in sent.iter().zip(&got) {
        assert_eq!(m["subject"], a.subject.as_str());
        assert_eq!(m["message"], a.body.as_str());
        assert_eq!(m["topic"], world.topic_arn.as_str());
    }
    assert!(
        got[0]["subject"]
            .as_str()
            .unwrap()
            .contains("nobody was playing")
    );
    assert!(got[1]["message"].as_str().unwrap().contains("line two"));
}

// ---------------------------------------------------------------------------------------------
// Failures.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_delays_but_never_loses_actions() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let agent = Agent::start(&shim, config(&world, false), Game::new(Duration::ZERO), 100).await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;
    // Let one metrics publish resolve the group before the outage.
    eventually("a metrics publish", Duration::from_secs(10), || async {
        shim.operations()
            .await
            .iter()
            .any(|o| o == "PutMetricData")
            .then_some(())
    })
    .await;

    // Moto unreachable for 30 s (IMDS stays up). Meanwhile the server goes idle (a scale-in
    // is requested) and the group starts terminating the instance (a DNS revert, a metrics
    // flush and the lifecycle completion are due).
    let outage_start = unix_now();
    shim.outage(30.0, "refuse", false).await;
    agent.packets.store(0, Ordering::SeqCst);
    sleep(Duration::from_secs(3)).await;
    shim.imds(json!({"target-lifecycle-state": "Terminated"}))
        .await;
    sleep(Duration::from_secs(20)).await;
    assert!(
        !agent.task.is_finished(),
        "the agent gave up during the outage"
    );
    let outage_end = outage_start + 30.0;

    let game = agent.game.clone();
    agent.finished(Duration::from_secs(90)).await.unwrap();
    assert!(unix_now() >= outage_end);
    assert_eq!(shim.desired_capacity(&world).await, 0);
    assert_eq!(shim.record(&world, "A").await.unwrap().1, vec!["0.0.0.0"]);
    let actions = shim.lifecycle_actions().await;
    let done: Vec<&Value> = actions
        .iter()
        .filter(|a| a["action"] == "CompleteLifecycleAction")
        .collect();
    assert_eq!(done.len(), 1, "{actions:?}");
    let completed = done[0]["time"].as_f64().unwrap();
    assert!(completed >= outage_end);
    eprintln!(
        "OUTAGE lifecycle completed {:.1} s after the outage ended",
        completed - outage_end
    );
    assert_eq!(game.stops().len(), 1);
    let messages = shim.messages(&world).await;
    assert!(
        messages.iter().any(|m| m["subject"]
            .as_str()
            .unwrap()
            .contains("nobody was playing")),
        "the idle alert was lost: {messages:?}"
    );
}

/// The agent restarts on a running instance (an upgrade, `systemctl restart`): players were
/// told the game is up in this boot, and are not told again. An `online` recorded before this
/// instance booted (an earlier wake) does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_is_told_once_per_boot_across_agent_restarts() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let text = config_text(&world, false, "10m").replace(
        "[alerts]\n",
        "[alerts]\nevents = [\"online\", \"needs_operator\"]\n",
    );
    let online = |m: &Vec<Value>| {
        m.iter()
            .filter(|m| m["subject"].as_str().unwrap().contains("is up"))
            .count()
    };
    // An online recorded two hours ago, before this instance booted (FakeHost: up 1 h).
    shim.ctl(
        "set_group_tag",
        json!({"name": world.group, "key": "container-manager:online", "value": (unix_now() as u64 - 7200).to_string()}),
    )
    .await;
    let first = Agent::start(
        &shim,
        config::parse("agent.toml", &text).unwrap(),
        Game::new(Duration::ZERO),
        100,
    )
    .await;
    let told = eventually(
        "the first agent's online",
        Duration::from_secs(30),
        || async {
            let m = shim.messages(&world).await;
            (online(&m) == 1).then_some(m)
        },
    )
    .await;
    assert_eq!(told.len(), 1, "{told:?}");
    let recorded = eventually(
        "online recorded on the group",
        Duration::from_secs(10),
        || async {
            let g = shim.ctl("group", json!({"name": world.group})).await;
            let at: u64 = g["tags"]["container-manager:online"]
                .as_str()?
                .parse()
                .ok()?;
            (at + 60 > unix_now() as u64).then_some(at)
        },
    )
    .await;
    first.stop().await.unwrap();
    assert_eq!(
        shim.desired_capacity(&world).await,
        1,
        "an agent stop leaves the game up"
    );

    let second = Agent::start(
        &shim,
        config::parse("agent.toml", &text).unwrap(),
        Game::new(Duration::ZERO),
        100,
    )
    .await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;
    sleep(Duration::from_secs(5)).await;
    let again = shim.messages(&world).await;
    eprintln!("ONLINE recorded at {recorded}; after the restart: {again:?}");
    assert_eq!(online(&again), 0, "told twice: {again:?}");
    second.stop().await.unwrap();
}

/// CloudWatch alone fails (503) while everything else works: the metrics, which the heartbeat
/// alarm reads, are not going out. After five failed publishes in a row the operator is told
/// once, with what the alarm will do; nothing is refused, and the agent itself stops nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_metrics_warn_the_operator_once_before_the_heartbeat_alarm_acts() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let agent = Agent::start(&shim, config(&world, false), Game::new(Duration::ZERO), 100).await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;
    shim.post(
        "/_shim/deny",
        json!({"policy": {"Statement": [{"Effect": "Deny", "Action": "cloudwatch:PutMetricData"}]},
               "code": "ServiceUnavailable", "status": 503}),
    )
    .await;
    let got = Mutex::new(Vec::new());
    eventually("the metrics warning", Duration::from_secs(60), || async {
        let mut all = got.lock().unwrap().clone();
        all.extend(shim.messages(&world).await);
        let found = all
            .iter()
            .any(|m| m["subject"].as_str().unwrap().contains("metrics failing"));
        *got.lock().unwrap() = all;
        found.then_some(())
    })
    .await;
    sleep(Duration::from_secs(10)).await;
    let mut all = got.lock().unwrap().clone();
    all.extend(shim.messages(&world).await);
    let failed = shim.get("/_shim/deny").await["denied"]
        .as_array()
        .unwrap()
        .len();
    eprintln!("METRICS {failed} failed PutMetricData attempt(s); messages: {all:?}");
    assert_eq!(all.len(), 1, "one message: {all:?}");
    let text = all[0]["message"].as_str().unwrap();
    assert!(
        text.contains("heartbeat alarm") && text.contains("disable-alarm-actions"),
        "{text}"
    );
    assert_eq!(
        shim.desired_capacity(&world).await,
        1,
        "the agent stops nothing for it"
    );
    // CloudWatch is back: the next publishes go out.
    shim.post("/_shim/deny", json!({})).await;
    eventually("metrics again", Duration::from_secs(20), || async {
        (!shim.metrics(NAMESPACE).await.is_empty()).then_some(())
    })
    .await;
    agent.stop().await.unwrap();
}

/// AWS denies the scale-in and the metrics (an explicit deny in the instance role's policy, as
/// after a hand-edited role or an SCP): each is told once, naming the IAM action to allow, the
/// must-happen scale-in is retried slowly instead of with the backoff, and the metrics are not
/// retried within a publish. The server keeps running, as with every error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_told_once_naming_the_permission_and_retried_slowly() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let agent = Agent::start(&shim, config(&world, false), Game::new(Duration::ZERO), 100).await;
    record_is(&shim, &world, "A", PUBLIC_IP).await;
    shim.post(
        "/_shim/deny",
        json!({"policy": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny",
            "Action": ["autoscaling:SetDesiredCapacity", "cloudwatch:PutMetric*"],
            "Resource": "*"
        }]}}),
    )
    .await;
    let denied_from = unix_now();
    agent.packets.store(0, Ordering::SeqCst); // idle after 1 s: the agent scales in
    // The queue is drained at each read: keep what each read got.
    let got = Mutex::new(Vec::new());
    eventually("both refusals told", Duration::from_secs(30), || async {
        let mut all = got.lock().unwrap().clone();
        all.extend(shim.messages(&world).await);
        let enough = all.len() >= 2;
        *got.lock().unwrap() = all;
        enough.then_some(())
    })
    .await;
    let messages = got.lock().unwrap().clone();
    sleep(Duration::from_secs(12)).await;
    let mut messages_later = messages.clone();
    messages_later.extend(shim.messages(&world).await);
    let denied = shim.get("/_shim/deny").await["denied"]
        .as_array()
        .unwrap()
        .clone();
    let watched = unix_now() - denied_from;
    let count = |action: &str| denied.iter().filter(|d| d["action"] == action).count();
    let scale_ins = count("autoscaling:SetDesiredCapacity");
    let publishes = count("cloudwatch:PutMetricData");
    eprintln!(
        "DENIED in {watched:.0} s: SetDesiredCapacity {scale_ins} time(s), PutMetricData {publishes} time(s); {} message(s)",
        messages_later.len()
    );
    assert_eq!(
        messages_later.len(),
        messages.len(),
        "told once: {messages_later:?}"
    );
    let told = |action: &str| {
        messages_later
            .iter()
            .filter(|m| m["message"].as_str().unwrap().contains(action))
            .count()
    };
    assert_eq!(
        told("autoscaling:SetDesiredCapacity"),
        1,
        "{messages_later:?}"
    );
    assert_eq!(told("cloudwatch:PutMetricData"), 1, "{messages_later:?}");
    assert!(
        messages_later.iter().all(|m| m["subject"]
            .as_str()
            .unwrap()
            .contains("AWS refuses a call")),
        "{messages_later:?}"
    );
    // The backoff would have tried the scale-in about 6 times in this window (0.5 s, 1 s, 2 s,
    // 4 s, 8 s...); a permanent refusal waits 5 minutes.
    assert_eq!(scale_ins, 1, "{denied:?}");
    // One publish a second, each tried once (not 3 times).
    assert!(
        publishes as f64 <= watched + 2.0,
        "{publishes} publishes in {watched:.0} s"
    );
    assert_eq!(
        shim.desired_capacity(&world).await,
        1,
        "nothing else scaled in"
    );
    // The refused scale-in would hold a graceful stop for the whole drain budget (it is a call
    // that must happen): a second signal ends it.
    agent.shutdown.graceful.cancel();
    sleep(Duration::from_secs(1)).await;
    agent.shutdown.force.cancel();
    agent.finished(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_errs_quickly() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let cloud = shim.adapters(&config(&world, false)).await;
    let capacity = cloud.capacity.unwrap();

    // Refused: an error in seconds.
    shim.outage(60.0, "refuse", false).await;
    let t = Instant::now();
    let e = capacity.scale_to_zero().await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{:?}: {e}",
        t.elapsed()
    );
    assert!(
        e.to_string().contains("DescribeAutoScalingInstances"),
        "{e}"
    );

    // Accepted but never answered: an error within the SDK's operation timeout, well under
    // the run loop's per-call bound.
    shim.outage(60.0, "hang", false).await;
    let t = Instant::now();
    let e = capacity.heartbeat().await.unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(27),
        "{took:?}: {e}"
    );
    assert!(took < run::CALL_TIMEOUT);
    shim.post("/_shim/outage/stop", json!({})).await;
    assert_eq!(shim.desired_capacity(&world).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_imds_at_boot_gives_metadata_only() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    shim.outage(60.0, "refuse", true).await;
    let options = BuildOptions {
        identity_budget: Duration::from_secs(3),
        ..shim.options()
    };
    let t = Instant::now();
    let cloud = build_with(&config(&world, false), &options).await;
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
    assert!(cloud.metadata.is_some());
    assert!(cloud.identity.is_none());
    assert!(
        cloud.dns.is_none()
            && cloud.capacity.is_none()
            && cloud.metrics.is_none()
            && cloud.alerts.is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_public_ipv4_is_a_clear_error() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    shim.imds(json!({"public-ipv4": null})).await;
    let cloud = shim.adapters(&config(&world, false)).await;
    let e = cloud.dns.unwrap().point_here().await.unwrap_err();
    assert!(e.to_string().contains("no public IPv4 address"), "{e}");
    assert_eq!(shim.record(&world, "A").await, None);
}

// ---------------------------------------------------------------------------------------------
// The binary, configured only through the standard environment.
// ---------------------------------------------------------------------------------------------

fn log_time(line: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(line["timestamp"].as_str().unwrap()).unwrap()
}

/// Also the start-to-DNS benchmark: prints the time from process start to the Route53 change
/// being submitted (`dns_change_submitted`) and confirmed (`dns_updated`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_points_dns_using_only_the_standard_environment() {
    use tokio::io::AsyncBufReadExt;

    let shim = Shim::start().await;
    let world = shim.world().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    // Its decision lines also go to CloudWatch Logs (issue 35).
    let group = "/container-manager/test/agent";
    let text = config_text(&world, false, "1h")
        + &format!("[decision_log]\nlog_group = \"{group}\"\ninterval = \"1s\"\n");
    std::fs::write(&path, text).unwrap();

    let spawned = std::time::SystemTime::now();
    // No region, credentials or profile from the test's environment: the region and the
    // instance-profile credentials come from IMDS, the endpoints from the standard variables.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_container-manager-agent"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(["--log-format", "json"])
        .env("AWS_ENDPOINT_URL", &shim.aws)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &shim.imds)
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-credentials"),
        )
        .env("RUST_LOG", "info")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL_ROUTE_53")
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let done = v["event"] == "dns_updated";
            seen.push(v);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    let event = |name: &str| seen.iter().find(|l| l["event"] == name).cloned();
    assert!(
        matches!(found, Ok(true)),
        "no dns_updated; the agent logged:\n{seen:#?}"
    );
    assert_eq!(
        shim.record(&world, "A").await.unwrap(),
        (60, vec![PUBLIC_IP.to_string()])
    );

    let ms = |t: std::time::SystemTime| t.duration_since(spawned).unwrap_or_default().as_millis();
    let started = event("agent_started").map(|l| ms(log_time(&l)));
    let submitted = event("dns_change_submitted").map(|l| ms(log_time(&l)));
    let updated = event("dns_updated").map(|l| ms(log_time(&l)));
    eprintln!(
        "BENCH start-to-dns: agent_started {started:?} ms, dns_change_submitted {submitted:?} ms, dns_updated {updated:?} ms after spawn"
    );
    assert!(submitted.is_some());

    let pid = child.id().unwrap().to_string();
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    // An agent stop leaves the record alone.
    assert_eq!(shim.record(&world, "A").await.unwrap().1, vec![PUBLIC_IP]);

    // The decision lines outlive the agent: in the group, in the instance's own stream, in
    // order, up to the stop itself (sent at the end); the samples stay in the journal.
    let kept = shim.ctl("log_events", json!({"group": group})).await;
    let kept = kept.as_array().unwrap();
    let texts: Vec<&str> = kept
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let at = |what: &str| {
        texts
            .iter()
            .position(|t| t.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} among the lines kept:\n{texts:#?}"))
    };
    assert!(at("INFO agent_started: Agent started.") < at("INFO dns_updated: "));
    assert!(at("INFO dns_updated: ") < at("INFO agent_stopped: Agent stopped."));
    assert!(
        texts[at("INFO dns_updated: ")].contains(PUBLIC_IP),
        "{texts:#?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains(" sample: ") || t.contains(" idle_countdown: ")),
        "{texts:#?}"
    );
    assert!(
        kept.iter().all(|e| e["stream"] == world.instance_id()),
        "{kept:#?}"
    );
    let times: Vec<i64> = kept
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    eprintln!(
        "decision lines kept in {group}: {}\n{}",
        texts.len(),
        texts.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_are_read_from_ssm_securestring_parameters() {
    let shim = Shim::start().await;
    let world = shim.world().await;
    let url = "https://discord.com/api/webhooks/1/sEcReT";
    shim.ctl(
        "put_secure",
        json!({"name": "/container-manager/test/discord", "value": url, "region": world.region}),
    )
    .await;
    let text = format!(
        "{}\n[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"/container-manager/test/discord\"\n",
        config_text(&world, false, "1s")
    );
    let with_hook = config::parse("agent.toml", &text).unwrap();
    let cloud = shim.adapters(&with_hook).await;
    let secrets = cloud.secrets.expect("webhooks configured: an SSM client");
    let got = secrets
        .secret("/container-manager/test/discord")
        .await
        .unwrap();
    assert_eq!(got.expose(), url);
    assert!(!format!("{got:?}").contains("sEcReT"));
    let err = secrets
        .secret("/container-manager/test/missing")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ParameterNotFound"), "{err}");
    // Without webhooks, no SSM client at all.
    let plain = shim.adapters(&config(&world, false)).await;
    assert!(plain.secrets.is_none());
}
