//! The `activity` and `probe` diagnostic commands.

use std::process::ExitCode;

/// `container-manager-agent activity --interface IF --port SPEC [--port SPEC ...]`
#[derive(Debug, clap::Args)]
pub struct ActivityArgs {
    /// The interface to count on.
    #[arg(long)]
    pub interface: String,
    /// A port spec: udp:N, tcp:N, udp:N-M or tcp:N-M. Repeat for several.
    #[arg(long = "port", required = true)]
    pub ports: Vec<String>,
    /// How often to print, like 1s or 500ms.
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// Stop after this many lines (default: run until SIGINT).
    #[arg(long)]
    pub samples: Option<u64>,
}

/// `container-manager-agent probe a2s|minecraft HOST:PORT [--timeout D]`
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// a2s or minecraft.
    pub kind: String,
    /// HOST:PORT of the game's query port.
    pub address: String,
    #[arg(long, default_value = "2s")]
    pub timeout: String,
}

pub async fn activity(args: ActivityArgs) -> ExitCode {
    eprintln!("activity: not part of this build yet ({args:?})");
    ExitCode::FAILURE
}

pub async fn probe(args: ProbeArgs) -> ExitCode {
    eprintln!("probe: not part of this build yet ({args:?})");
    ExitCode::FAILURE
}
