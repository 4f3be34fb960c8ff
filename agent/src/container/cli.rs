//! The `containers` diagnostic command: the watcher's classified events as JSON lines.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::docker::{DockerContainers, Observed};
use crate::config::{ContainerConfig, ContainerSelector};
use crate::logging::{self, LogFormat};

/// The exit code for a usage error.
const EXIT_USAGE: u8 = 2;

/// `container-manager-agent containers [--ecs-container-name N | --docker-name N]`
#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    /// Select the container by its ECS label `com.amazonaws.ecs.container-name`.
    #[arg(long, conflicts_with = "docker_name")]
    pub ecs_container_name: Option<String>,
    /// Select the container by its Docker name.
    #[arg(long)]
    pub docker_name: Option<String>,
    /// How many log lines a crash line carries (`log_tail`).
    #[arg(long, default_value_t = 20)]
    pub log_lines: usize,
}

/// One printed line.
#[derive(Debug, serde::Serialize)]
struct Line<'a> {
    time: String,
    event: &'static str,
    id: &'a str,
    name: &'a str,
    /// Docker's own time of the event (for a reconcile: when the container started or exited).
    docker_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crash: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oom_killed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_tail: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

fn rfc3339_ns(ns: i64) -> String {
    let t = u64::try_from(ns).map_or(SystemTime::UNIX_EPOCH, |n| {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(n)
    });
    humantime::format_rfc3339_nanos(t).to_string()
}

fn line(o: &Observed) -> Line<'_> {
    let time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let base = |event, id, name, t| Line {
        time: time.clone(),
        event,
        id,
        name,
        docker_time: rfc3339_ns(t),
        exit_code: None,
        crash: None,
        requested: None,
        oom_killed: None,
        reason: None,
        log_tail: None,
        status: None,
    };
    match o {
        Observed::Running { id, name, time_ns } => base("running", id, name, *time_ns),
        Observed::Oom { id, name, time_ns } => base("oom", id, name, *time_ns),
        Observed::Health {
            id,
            name,
            status,
            time_ns,
        } => Line {
            status: Some(status),
            ..base("health_status", id, name, *time_ns)
        },
        Observed::Exited(exit) => Line {
            exit_code: Some(exit.exit_code),
            crash: Some(exit.crash()),
            requested: Some(exit.requested),
            oom_killed: Some(exit.oom_killed),
            reason: Some(&exit.reason),
            log_tail: exit.crash().then_some(exit.log_tail.as_slice()),
            ..base("exited", &exit.id, &exit.name, exit.time_ns)
        },
    }
}

pub async fn containers(args: ContainersArgs) -> ExitCode {
    let selector = match (args.ecs_container_name, args.docker_name) {
        (Some(n), None) if !n.trim().is_empty() => ContainerSelector::EcsContainerName(n),
        (None, Some(n)) if !n.trim().is_empty() => ContainerSelector::DockerName(n),
        _ => {
            eprintln!(
                "containers: exactly one of --ecs-container-name or --docker-name is required (and not empty)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Logs (reconnects, classification reasons) go to stderr; stdout carries only JSON lines.
    if let Some(note) = logging::init(LogFormat::Text) {
        eprintln!("{note}");
    }
    let config = ContainerConfig {
        selector,
        stop_timeout: Duration::from_secs(10),
        pre_stop_command: Vec::new(),
        crashes_before_shutdown: 1,
        alert_log_lines: args.log_lines,
        image: None,
        start_within: None,
    };
    let docker = match DockerContainers::from_env(config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("containers: {e}");
            return ExitCode::FAILURE;
        }
    };
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("containers: cannot install the signal handlers");
        return ExitCode::FAILURE;
    };
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel::<Observed>(64);
    let print = async {
        let mut stdout = std::io::stdout();
        while let Some(o) = rx.recv().await {
            let ok = serde_json::to_string(&line(&o))
                .map_err(std::io::Error::other)
                .and_then(|s| writeln!(stdout, "{s}").and_then(|()| stdout.flush()));
            if ok.is_err() {
                // stdout is gone (a closed pipe): nothing more to do.
                cancel.cancel();
                return;
            }
        }
    };
    let signals = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            () = cancel.cancelled() => {}
        }
        cancel.cancel();
    };
    tokio::join!(docker.observe(tx, cancel.clone()), print, signals);
    ExitCode::SUCCESS
}
