//! The run loop on a paused tokio clock with in-memory fakes: a whole idle story and a whole
//! crash story, checked through the calls the fakes recorded and their order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use container_manager_agent::activity::{CounterError, PacketCounter};
use container_manager_agent::aws::{
    AlertMessage, Alerts, AwsError, Capacity, DnsRecord, Identity, InstanceMetadata, Metrics,
    RevertOutcome,
};
use container_manager_agent::config;
use container_manager_agent::container::{ContainerError, Containers, StopReport};
use container_manager_agent::decide::{ContainerEvent, LifecycleState, MetricsBatch, StopFacts};
use container_manager_agent::run::{self, Adapters, Host, RunOptions, Shutdown};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Everything the fakes saw, in order, with the time since the start.
#[derive(Debug, Default)]
struct World {
    t0: Option<Instant>,
    calls: Vec<(Duration, String)>,
    lifecycle: Option<LifecycleState>,
    alerts: Vec<AlertMessage>,
    metrics: Vec<MetricsBatch>,
    /// Packets per take while `now < busy_until`.
    busy_until: Duration,
    /// When the game crashes (None: never).
    crash_at: Option<Duration>,
}

type Shared = Arc<Mutex<World>>;

fn record(w: &Shared, what: impl Into<String>) {
    let mut w = w.lock().unwrap();
    let t = Instant::now() - w.t0.unwrap();
    w.calls.push((t, what.into()));
}

fn elapsed(w: &Shared) -> Duration {
    Instant::now() - w.lock().unwrap().t0.unwrap()
}

#[derive(Debug)]
struct FakeCounter(Shared);
impl PacketCounter for FakeCounter {
    fn take(&mut self) -> Result<Vec<u64>, CounterError> {
        let busy = elapsed(&self.0) < self.0.lock().unwrap().busy_until;
        Ok(vec![if busy { 300 } else { 0 }])
    }
}

#[derive(Debug)]
struct FakeContainers(Shared);
#[async_trait]
impl Containers for FakeContainers {
    async fn watch(&self, events: mpsc::Sender<ContainerEvent>, cancel: CancellationToken) {
        let _ = events
            .send(ContainerEvent::Running {
                id: "c0ffee".repeat(10),
                name: "game".into(),
            })
            .await;
        let crash_at = self.0.lock().unwrap().crash_at;
        if let Some(at) = crash_at {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(at) => {}
            }
            record(&self.0, "container crashed");
            let _ = events
                .send(ContainerEvent::Exited {
                    id: "c0ffee".repeat(10),
                    name: "game".into(),
                    exit_code: 3,
                    requested: false,
                    oom_killed: false,
                    log_tail: vec!["loading world".into(), "fatal: corrupted chunk".into()],
                })
                .await;
        }
        cancel.cancelled().await;
    }

    async fn graceful_stop(&self) -> Result<StopReport, ContainerError> {
        record(&self.0, "graceful stop begins");
        tokio::time::sleep(Duration::from_secs(20)).await; // a slow save
        record(&self.0, "graceful stop done");
        Ok(StopReport {
            container: Some("game".into()),
            pre_stop: None,
            exited_on_its_own: true,
            exit_code: Some(0),
            duration: Duration::from_secs(20),
        })
    }

    async fn prepare_image(&self, image: &str) -> Result<bool, ContainerError> {
        record(&self.0, format!("prepare image {image}"));
        Ok(true)
    }
}

#[derive(Debug)]
struct FakeMetadata(Shared);
#[async_trait]
impl InstanceMetadata for FakeMetadata {
    async fn identity(&self) -> Result<Identity, AwsError> {
        Ok(Identity {
            instance_id: "i-0123".into(),
            region: "eu-west-1".into(),
            public_ipv4: Some("203.0.113.10".parse().unwrap()),
            ipv6: None,
        })
    }
    async fn lifecycle_state(&self) -> Result<LifecycleState, AwsError> {
        self.0
            .lock()
            .unwrap()
            .lifecycle
            .clone()
            .ok_or(AwsError::Metadata {
                path: "autoscaling/target-lifecycle-state".into(),
                reason: "not yet".into(),
            })
    }
    async fn spot_interruption(&self) -> Result<bool, AwsError> {
        Ok(false)
    }
}

#[derive(Debug)]
struct FakeDns(Shared);
#[async_trait]
impl DnsRecord for FakeDns {
    async fn point_here(&self) -> Result<String, AwsError> {
        record(&self.0, "dns upsert");
        Ok("203.0.113.10".into())
    }
    async fn revert(&self) -> Result<RevertOutcome, AwsError> {
        record(&self.0, "dns revert");
        Ok(RevertOutcome::Reverted)
    }
}

/// The group: scaling to zero starts the instance's termination, as a real group does.
#[derive(Debug)]
struct FakeCapacity(Shared);
#[async_trait]
impl Capacity for FakeCapacity {
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
        record(&self.0, "complete launch");
        Ok(())
    }
    async fn heartbeat(&self) -> Result<(), AwsError> {
        record(&self.0, "heartbeat");
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
        record(&self.0, format!("record stop {reason}"));
        Ok(())
    }
    async fn record_wake_outcome(
        &self,
        _at: u64,
        _minutes: u64,
        joined: bool,
    ) -> Result<(), AwsError> {
        record(&self.0, format!("record wake joined={joined}"));
        Ok(())
    }
    async fn record_online(&self, _at: u64) -> Result<(), AwsError> {
        record(&self.0, "record online");
        Ok(())
    }
}

#[derive(Debug)]
struct FakeMetrics(Shared);
#[async_trait]
impl Metrics for FakeMetrics {
    async fn publish(&self, batch: &MetricsBatch) -> Result<(), AwsError> {
        record(&self.0, "metrics");
        self.0.lock().unwrap().metrics.push(batch.clone());
        Ok(())
    }
}

#[derive(Debug)]
struct FakeAlerts(Shared);
#[async_trait]
impl Alerts for FakeAlerts {
    async fn send(&self, alert: &AlertMessage) -> Result<(), AwsError> {
        record(&self.0, format!("alert: {}", alert.subject));
        self.0.lock().unwrap().alerts.push(alert.clone());
        Ok(())
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

const CONFIG: &str = r#"
[container]
ecs_container_name = "game"
stop_timeout = "60s"
alert_log_lines = 5
[activity]
ports = ["udp:2456-2458"]
sample_interval = "10s"
idle_after = "2m"
boot_grace = "0s"
keep_awake_file = "/nonexistent/container-manager-test/keep-awake"
[dns]
hosted_zone_id = "Z1"
record_name = "valheim.example.test"
[scaling]
auto_scaling_group = "game-asg"
lifecycle_hook = "drain"
[metrics]
interval = "60s"
[alerts]
sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:game"
"#;

fn adapters(w: &Shared) -> Adapters {
    Adapters {
        counter: Ok(Box::new(FakeCounter(w.clone()))),
        probe: None,
        containers: Some(Arc::new(FakeContainers(w.clone()))),
        metadata: Some(Arc::new(FakeMetadata(w.clone()))),
        dns: Some(Arc::new(FakeDns(w.clone()))),
        capacity: Some(Arc::new(FakeCapacity(w.clone()))),
        metrics: Some(Arc::new(FakeMetrics(w.clone()))),
        alerts: Some(Arc::new(FakeAlerts(w.clone()))),
        secrets: None,
        http: None,
        problems: vec![],
        addresses: vec!["203.0.113.7".into()],
        decision_log: None,
        host: Arc::new(FakeHost),
    }
}

async fn play(world: World) -> (Result<(), run::RunError>, World) {
    let w: Shared = Arc::new(Mutex::new(World {
        t0: Some(Instant::now()),
        ..world
    }));
    let cfg = config::parse("agent.toml", CONFIG).unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(3600),
        run::run(
            cfg,
            adapters(&w),
            RunOptions::default(),
            Shutdown::default(),
        ),
    )
    .await
    .expect("the story did not end within an hour of agent time");
    let world = std::mem::take(&mut *w.lock().unwrap());
    (result, world)
}

fn position(w: &World, what: &str) -> (usize, Duration) {
    let i = w
        .calls
        .iter()
        .position(|(_, c)| c.starts_with(what))
        .unwrap_or_else(|| panic!("no {what:?} in {:#?}", w.calls));
    (i, w.calls[i].0)
}

#[tokio::test(start_paused = true)]
async fn idle_story() {
    let (result, w) = play(World {
        lifecycle: Some(LifecycleState::InService),
        busy_until: Duration::from_secs(300),
        ..World::default()
    })
    .await;
    result.unwrap();
    let (dns, dns_t) = position(&w, "dns upsert");
    assert!(dns_t < Duration::from_secs(6), "DNS at {dns_t:?}");
    let (scale, scale_t) = position(&w, "set desired 0");
    // Players until 300 s (the last busy sample is at 290 s); idle_after 120 s; samples every
    // 10 s: the scale-in comes with the sample at 410 s, never earlier.
    assert!(
        scale_t >= Duration::from_secs(410),
        "scaled in at {scale_t:?}, under players"
    );
    assert!(
        scale_t <= Duration::from_secs(430),
        "scaled in late, at {scale_t:?}"
    );
    let (alert, _) = position(
        &w,
        "alert: valheim.example.test stopped: nobody was playing",
    );
    let (stop, stop_t) = position(&w, "graceful stop begins");
    let (stopped, stopped_t) = position(&w, "graceful stop done");
    let (revert, _) = position(&w, "dns revert");
    let (complete, _) = position(&w, "complete lifecycle");
    // DNS goes back while the game saves; the hook completes only after both.
    assert!(
        dns < scale
            && scale < stop
            && stop < stopped
            && scale < revert
            && revert < stopped
            && stopped < complete,
        "{:#?}",
        w.calls
    );
    // The idle stop is told after the save, with its outcome.
    assert!(alert > stopped, "{:#?}", w.calls);
    // Heartbeats ran during the 20 s save (stop_timeout 60 s: one every 15 s).
    let beats = w
        .calls
        .iter()
        .filter(|(t, c)| c == "heartbeat" && *t >= stop_t && *t <= stopped_t)
        .count();
    assert!(
        beats >= 2,
        "heartbeats during the save: {beats} in {:#?}",
        w.calls
    );
    // Metrics: one batch a minute while running, then a final flush before the completion.
    let flush_pos = w.calls.iter().rposition(|(_, c)| c == "metrics").unwrap();
    assert!(flush_pos > stopped && flush_pos < complete);
    assert!(w.metrics.len() >= 7, "{} batches", w.metrics.len());
    assert_eq!(
        w.metrics[0].inbound_packets,
        Some(300 * 5),
        "the first minute: 5 full samples"
    );
    assert!(
        w.metrics
            .iter()
            .all(|m| m.container_running || m.idle_seconds > 0.0)
    );
    assert_eq!(w.alerts.len(), 1, "{:?}", w.alerts);
    assert!(
        w.alerts[0].body.contains("Nobody played"),
        "{}",
        w.alerts[0].body
    );
    assert!(
        w.alerts[0].body.contains("The world was saved"),
        "{}",
        w.alerts[0].body
    );
}

#[tokio::test(start_paused = true)]
async fn crash_story() {
    let (result, w) = play(World {
        lifecycle: Some(LifecycleState::InService),
        busy_until: Duration::from_secs(3600),
        crash_at: Some(Duration::from_secs(95)),
        ..World::default()
    })
    .await;
    result.unwrap();
    let (crash, crash_t) = position(&w, "container crashed");
    let (scale, scale_t) = position(&w, "set desired 0");
    assert!(scale > crash);
    assert!(
        scale_t - crash_t < Duration::from_secs(1),
        "players were online, and still the crash scales in at once"
    );
    assert_eq!(w.alerts.len(), 1, "exactly one alert: {:?}", w.alerts);
    let a = &w.alerts[0];
    assert_eq!(a.subject, "valheim.example.test: game crashed (exit 3)");
    assert!(a.body.contains("exit code 3"), "{}", a.body);
    assert!(a.body.contains("fatal: corrupted chunk"), "{}", a.body);
    // The termination that follows still saves and completes.
    position(&w, "graceful stop done");
    position(&w, "complete lifecycle");
}

#[tokio::test(start_paused = true)]
async fn a_signal_drains_and_leaves_the_game_running() {
    let w: Shared = Arc::new(Mutex::new(World {
        t0: Some(Instant::now()),
        lifecycle: Some(LifecycleState::InService),
        busy_until: Duration::from_secs(3600),
        ..World::default()
    }));
    let cfg = config::parse("agent.toml", CONFIG).unwrap();
    let shutdown = Shutdown::default();
    let trigger = shutdown.graceful.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        trigger.cancel();
    });
    run::run(cfg, adapters(&w), RunOptions::default(), shutdown)
        .await
        .unwrap();
    let w = w.lock().unwrap();
    assert!(
        w.calls.iter().any(|(_, c)| c == "metrics"),
        "the final flush: {:#?}",
        w.calls
    );
    assert!(
        !w.calls.iter().any(|(_, c)| c.starts_with("graceful stop")
            || c == "dns revert"
            || c == "set desired 0"),
        "{:#?}",
        w.calls
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_changes_nothing() {
    let w: Shared = Arc::new(Mutex::new(World {
        t0: Some(Instant::now()),
        lifecycle: Some(LifecycleState::InService),
        busy_until: Duration::ZERO,
        crash_at: Some(Duration::from_secs(20)),
        ..World::default()
    }));
    let cfg = config::parse("agent.toml", CONFIG).unwrap();
    let shutdown = Shutdown::default();
    let trigger = shutdown.graceful.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(400)).await;
        trigger.cancel();
    });
    run::run(cfg, adapters(&w), RunOptions { dry_run: true }, shutdown)
        .await
        .unwrap();
    let w = w.lock().unwrap();
    let world_changes: Vec<_> = w
        .calls
        .iter()
        .filter(|(_, c)| c != "container crashed")
        .collect();
    assert!(
        world_changes.is_empty(),
        "dry run performed: {world_changes:#?}"
    );
}
