//! The sources: the owned tasks that observe the world and feed the core's inputs (the
//! sampler, the container watcher, the metadata poller). They stop on one cancellation token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::activity::{PacketCounter, Probe};
use crate::aws::InstanceMetadata;
use crate::config::Config;
use crate::container::Containers;
use crate::decide::{
    ContainerEvent, Input, LifecycleState, Observation, PacketReading, ProbeReading,
};
use crate::retry::CALL_TIMEOUT;

/// How often IMDS is polled for the lifecycle state and Spot notices.
pub const METADATA_POLL: Duration = Duration::from_secs(5);

/// Where the sources' inputs arrive. A channel closes when its sources are gone (or were
/// never started), and the loop stops listening to it.
#[derive(Debug)]
pub(super) struct Inputs {
    pub(super) observations: mpsc::Receiver<Input>,
    pub(super) container: mpsc::Receiver<ContainerEvent>,
}

/// Starts the sources as owned tasks in `tasks`: the sampler, the container watcher (with a
/// container adapter) and the metadata poller. Without a metadata service the host is
/// standalone, outside any group.
pub(super) async fn spawn(
    tasks: &mut JoinSet<()>,
    config: &Config,
    counter: Result<Box<dyn PacketCounter>, String>,
    probe: Option<Arc<dyn Probe>>,
    containers: Option<Arc<dyn Containers>>,
    metadata: Option<Arc<dyn InstanceMetadata>>,
    cancel: &CancellationToken,
) -> Inputs {
    let (input_tx, observations) = mpsc::channel::<Input>(64);
    let (container_tx, container) = mpsc::channel::<ContainerEvent>(64);
    tasks.spawn(sampler(
        counter,
        probe,
        config.clone(),
        input_tx.clone(),
        cancel.clone(),
    ));
    if let Some(c) = containers {
        let cancel = cancel.clone();
        tasks.spawn(async move { c.watch(container_tx, cancel).await });
    } else {
        drop(container_tx);
    }
    match metadata {
        Some(m) => {
            tasks.spawn(metadata_poller(m, input_tx.clone(), cancel.clone()));
        }
        None => {
            // No metadata service: behave as a host outside any group.
            let _ = input_tx
                .send(Input::Lifecycle(LifecycleState::Standalone))
                .await;
        }
    }
    drop(input_tx);
    Inputs {
        observations,
        container,
    }
}

/// Counts packets and probes the game every sample interval.
async fn sampler(
    mut counter: Result<Box<dyn PacketCounter>, String>,
    probe: Option<Arc<dyn Probe>>,
    config: Config,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    let every = config.activity.sample_interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let specs: Vec<String> = config
        .activity
        .ports
        .iter()
        .map(ToString::to_string)
        .collect();
    // Discard whatever arrived before the first interval began.
    if let Ok(c) = counter.as_mut() {
        let _ = c.take();
    }
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let interval = now.saturating_duration_since(last);
        last = now;
        let packets = match counter.as_mut() {
            Ok(c) => match c.take() {
                Ok(counts) => PacketReading::Known {
                    total: counts.iter().sum(),
                    by_port: specs.iter().cloned().zip(counts).collect(),
                },
                Err(e) => PacketReading::Unknown {
                    reason: e.to_string(),
                },
            },
            Err(reason) => PacketReading::Unknown {
                reason: reason.clone(),
            },
        };
        let probe_reading = match &probe {
            None => None,
            Some(p) => {
                let limit = config
                    .activity
                    .probe
                    .as_ref()
                    .map_or(Duration::from_secs(2), |p| p.timeout)
                    + Duration::from_millis(500);
                Some(match timeout(limit, p.players()).await {
                    Ok(Ok(c)) => ProbeReading::Players {
                        online: c.players,
                        max: c.max_players,
                    },
                    Ok(Err(e)) => ProbeReading::Failed {
                        error: e.to_string(),
                    },
                    Err(_) => ProbeReading::Failed {
                        error: format!("no answer within {limit:?}"),
                    },
                })
            }
        };
        let keep_awake = tokio::fs::try_exists(&config.activity.keep_awake_file)
            .await
            .ok();
        log_sample(&packets, probe_reading.as_ref(), keep_awake, interval);
        let obs = Observation {
            interval,
            packets,
            probe: probe_reading,
            keep_awake,
        };
        if tx.send(Input::Observation(obs)).await.is_err() {
            return;
        }
    }
}

fn log_sample(
    packets: &PacketReading,
    probe: Option<&ProbeReading>,
    keep_awake: Option<bool>,
    interval: Duration,
) {
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let players = match probe {
        Some(ProbeReading::Players { online, .. }) => Some(*online),
        _ => None,
    };
    let probe_error = match probe {
        Some(ProbeReading::Failed { error }) => Some(error.as_str()),
        _ => None,
    };
    match packets {
        PacketReading::Known { total, by_port } => {
            let by_port = by_port
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            info!(event = "sample", packets = total, by_port = %by_port, players, probe_error, keep_awake, interval_ms, "Sample.");
        }
        PacketReading::Unknown { reason } => {
            warn!(event = "sample", packets_unknown = %reason, players, probe_error, keep_awake, interval_ms, "Sample; packets could not be counted.");
        }
    }
}

/// Polls IMDS for the lifecycle state and Spot notices. Errors are logged and skipped: an
/// unknown state changes nothing.
async fn metadata_poller(
    metadata: Arc<dyn InstanceMetadata>,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    let mut last: Option<LifecycleState> = None;
    let mut spot_sent = false;
    let mut ticker = tokio::time::interval(METADATA_POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match timeout(CALL_TIMEOUT, metadata.lifecycle_state()).await {
            Ok(Ok(state)) => {
                failures = 0;
                if last.as_ref() != Some(&state) {
                    last = Some(state.clone());
                    if tx.send(Input::Lifecycle(state)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(error = %e, failures, "Cannot read the lifecycle state; keeping the last known one.");
                }
            }
            Err(_) => warn!("Reading the lifecycle state timed out."),
        }
        if !spot_sent
            && let Ok(Ok(true)) = timeout(CALL_TIMEOUT, metadata.spot_interruption()).await
        {
            spot_sent = true;
            if tx.send(Input::SpotInterruption).await.is_err() {
                return;
            }
        }
    }
}
