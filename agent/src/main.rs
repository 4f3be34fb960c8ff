//! `container-manager-agent`: parse the CLI, load the config, build the real adapters, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use container_manager_agent::config::{self, Config, EXIT_CONFIG};
use container_manager_agent::decide::Problem;
use container_manager_agent::logging::{self, LogFormat};
use container_manager_agent::run::{self, Adapters, LinuxHost, RunOptions, Shutdown};
use container_manager_agent::{activity, aws, container, notify, unit};

#[derive(Debug, Parser)]
#[command(
    name = "container-manager-agent",
    version,
    about = "Scales a game server to zero when nobody plays, and saves the world first."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (what the systemd unit starts).
    Run {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Log every world-changing action instead of performing it.
        #[arg(long)]
        dry_run: bool,
        /// Default: journald under systemd (JOURNAL_STREAM set), text otherwise.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a config file exactly as `run` does; exits 0 when valid, 78 when not.
    CheckConfig {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print inbound packet counts per port spec, one JSON object per interval.
    Activity(activity::cli::ActivityArgs),
    /// Ask a game server for its player count and print it as JSON.
    Probe(activity::cli::ProbeArgs),
    /// Print the game container's classified events, one JSON object per line.
    Containers(container::cli::ContainersArgs),
    /// Print the hardened systemd unit that the .deb and the .rpm install, for this binary's path.
    PrintUnit {
        /// The binary's absolute path, for ExecStart= and ExecStartPre=.
        #[arg(long, default_value = unit::PACKAGED_BINARY)]
        binary: String,
    },
    /// Print the sysusers.d lines of the service user, as the packages install them.
    PrintSysusers,
    /// Save and stop the game as the agent does before every stop: the pre-stop command, then
    /// SIGTERM and `stop_timeout`. Nothing to do (exit 0) when no game container runs. The
    /// save unit runs it at shutdown, after the agent's own stop, for when the agent is dead.
    SaveGame {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the save unit (`container-manager-save.service`) for this binary's path.
    PrintSaveUnit {
        /// The binary's absolute path, for ExecStop=.
        #[arg(long, default_value = unit::PACKAGED_BINARY)]
        binary: String,
    },
}

// `check-config` answers on stdout, for a person or `ExecStartPre`.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(c) => {
                {
                    println!("{}: valid", c.source);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
        },
        Command::Run {
            config,
            dry_run,
            log_format,
        } => {
            // Validate before anything else, so a bad config performs no action.
            let config = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            if let Some(note) = logging::init(log_format.unwrap_or_else(LogFormat::default_for_env))
            {
                tracing::warn!("{note}");
            }
            match runtime() {
                Ok(rt) => rt.block_on(run_agent(config, dry_run)),
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Activity(args) => with_runtime(activity::cli::activity(args)),
        Command::Probe(args) => with_runtime(activity::cli::probe(args)),
        Command::Containers(args) => with_runtime(container::cli::containers(args)),
        Command::PrintUnit { binary } => match unit::unit_for(&binary) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("print-unit: {e}");
                ExitCode::from(2)
            }
        },
        Command::PrintSysusers => {
            print!("{}", unit::PACKAGED_SYSUSERS);
            ExitCode::SUCCESS
        }
        Command::PrintSaveUnit { binary } => match unit::save_unit_for(&binary) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("print-save-unit: {e}");
                ExitCode::from(2)
            }
        },
        Command::SaveGame { config } => {
            let config = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            if let Some(note) = logging::init(LogFormat::default_for_env()) {
                tracing::warn!("{note}");
            }
            // Its report is on stdout and in the journal; no decision lines to ship.
            container_manager_agent::logship::KEPT.discard();
            with_runtime(save_game(config))
        }
    }
}

/// `save-game`: one graceful stop of the game, bounded, with its report on stdout as JSON.
async fn save_game(config: Config) -> ExitCode {
    let containers = match container::docker_for(&config.container) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("save-game: cannot connect to Docker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = container::graceful_stop_bound(config.container.stop_timeout);
    match tokio::time::timeout(bound, containers.graceful_stop()).await {
        Ok(Ok(report)) => {
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("save-game: cannot print the report: {e}"),
            }
            if report.container.is_none() {
                tracing::info!(
                    event = "save_game",
                    "No game container runs: nothing to save."
                );
                return ExitCode::SUCCESS;
            }
            let pre_stop_ok = report
                .pre_stop
                .as_ref()
                .is_none_or(|p| p.exit_code == Some(0));
            let saved = report.exited_on_its_own && pre_stop_ok;
            tracing::info!(
                event = "save_game",
                saved,
                container = report.container.as_deref().unwrap_or(""),
                "The game was stopped by the save unit{}.",
                if saved {
                    " after saving"
                } else {
                    ", but may not have saved"
                }
            );
            if saved {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Err(e)) => {
            eprintln!("save-game: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("save-game: the graceful stop did not end within {bound:?}");
            ExitCode::FAILURE
        }
    }
}

/// One thread: the agent waits almost all the time, and every extra worker thread costs a
/// malloc arena and a stack (the footprint target is 16 MiB RSS).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
}

fn with_runtime(fut: impl Future<Output = ExitCode>) -> ExitCode {
    match runtime() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_agent(config: Config, dry_run: bool) -> ExitCode {
    let shutdown = Shutdown::default();
    let signals = tokio::spawn(watch_signals(shutdown.clone()));
    // Building waits for IMDS (bounded); a stop signal meanwhile ends the agent at once.
    let adapters = tokio::select! {
        a = build_adapters(&config) => a,
        () = shutdown.graceful.cancelled() => {
            tracing::info!(event = "agent_stopped", "Stopped before the agent was fully up.");
            return ExitCode::SUCCESS;
        }
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let result = run::run(config, adapters, RunOptions { dry_run }, shutdown).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    signals.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Agent stopped with an error.");
            ExitCode::FAILURE
        }
    }
}

/// First SIGTERM/SIGINT: graceful drain. Second: force.
async fn watch_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; the agent stops only when its work ends.");
        return;
    };
    let mut count = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        count += 1;
        if count == 1 {
            shutdown.graceful.cancel();
        } else {
            shutdown.force.cancel();
            return;
        }
    }
}

async fn build_adapters(config: &Config) -> Adapters {
    let mut problems = Vec::new();
    let counter = activity::open_counter(&config.activity).map_err(|e| {
        tracing::error!(error = %e, "Cannot count packets; every sample is unknown (never idle).");
        problems.push(Problem::NoPacketCounter {
            error: e.to_string(),
        });
        e.to_string()
    });
    let probe = config.activity.probe.as_ref().map(activity::probe_for);
    let containers = match container::docker_for(&config.container) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "Cannot connect to Docker; crashes will not be seen.");
            problems.push(Problem::NoDocker {
                error: e.to_string(),
            });
            None
        }
    };
    let cloud = aws::build(config).await;
    if config.uses_aws() && cloud.identity.is_none() {
        problems.push(Problem::NoMetadata);
    }
    let http = if config.notify.webhooks.is_empty() {
        None
    } else {
        match notify::http::Https::new() {
            Ok(h) => Some(Arc::new(h) as Arc<dyn notify::http::HttpPost>),
            Err(e) => {
                tracing::error!(error = %e, "Cannot build the HTTPS client; webhook notifications are off.");
                None
            }
        }
    };
    let addresses = cloud
        .identity
        .as_ref()
        .map(|i| {
            let v4 = i.public_ipv4.map(|a| a.to_string());
            let v6 = i
                .ipv6
                .filter(|_| config.dns.as_ref().is_some_and(|d| d.ipv6))
                .map(|a| a.to_string());
            v4.into_iter().chain(v6).collect()
        })
        .unwrap_or_default();
    Adapters {
        counter,
        probe,
        containers,
        metadata: cloud.metadata,
        dns: cloud.dns,
        capacity: cloud.capacity,
        metrics: cloud.metrics,
        alerts: cloud.alerts,
        secrets: cloud.secrets,
        http,
        decision_log: cloud.decision_log,
        problems,
        addresses,
        host: Arc::new(LinuxHost::default()),
    }
}
