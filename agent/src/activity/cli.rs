//! The `activity` and `probe` diagnostic commands.
//!
//! Exit codes: 0 success, 1 the measurement failed (probe timeout, refusal, malformed reply,
//! no packet socket), 2 a bad argument (the message names it, like clap's own usage errors).

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};

use super::packet::{Backoff, KernelCounter};
use super::{PacketCounter, route};
use crate::config::{InterfaceChoice, PortSpec, ProbeKind, parse_duration};

const USAGE: u8 = 2;

/// `container-manager-agent activity --interface IF --port SPEC [--port SPEC ...]`
#[derive(Debug, clap::Args)]
pub struct ActivityArgs {
    /// The interface to count on, or "auto" for the one of the default route.
    #[arg(long, default_value = "auto")]
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
    /// The deadline for the whole exchange, like 2s or 500ms.
    #[arg(long, default_value = "2s")]
    pub timeout: String,
}

fn usage(arg: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{arg}: {message}");
    ExitCode::from(USAGE)
}

/// The validated arguments of `activity`.
struct Activity {
    interface: InterfaceChoice,
    ports: Vec<PortSpec>,
    interval: Duration,
    samples: Option<u64>,
}

fn check_activity(args: &ActivityArgs) -> Result<Activity, ExitCode> {
    let mut ports = Vec::new();
    let mut seen = HashSet::new();
    for p in &args.ports {
        let spec: PortSpec = p.parse().map_err(|m| usage("--port", m))?;
        if !seen.insert(spec) {
            return Err(usage("--port", format!("{p:?} is given twice")));
        }
        ports.push(spec);
    }
    let interval = parse_duration(&args.interval).map_err(|m| usage("--interval", m))?;
    if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
        return Err(usage(
            "--interval",
            format!(
                "{:?} is out of range (expected between 10ms and 1h)",
                args.interval
            ),
        ));
    }
    if args.samples == Some(0) {
        return Err(usage(
            "--samples",
            "0 is not a number of lines (expected 1 or more)",
        ));
    }
    let interface = if args.interface == "auto" {
        InterfaceChoice::Auto
    } else {
        if super::iface::interface_index(&args.interface).is_none() {
            return Err(usage(
                "--interface",
                format!(
                    "there is no interface named {:?} (see `ip link`)",
                    args.interface
                ),
            ));
        }
        InterfaceChoice::Named(args.interface.clone())
    };
    Ok(Activity {
        interface,
        ports,
        interval,
        samples: args.samples,
    })
}

/// Prints inbound packet counts per port spec, one JSON object per interval.
pub async fn activity(args: ActivityArgs) -> ExitCode {
    let a = match check_activity(&args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if a.interface == InterfaceChoice::Auto
        && let Err(e) = route::default_interface()
    {
        eprintln!("--interface auto: {e}");
        return ExitCode::FAILURE;
    }
    let mut counter =
        match KernelCounter::open(a.interface.clone(), a.ports.clone(), Backoff::default()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot count packets: {e}");
                return ExitCode::FAILURE;
            }
        };
    let specs: Vec<String> = a.ports.iter().map(ToString::to_string).collect();
    let mut ticker = tokio::time::interval_at(Instant::now() + a.interval, a.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last = Instant::now();
    let mut printed = 0u64;
    let mut out = std::io::stdout();
    while a.samples.is_none_or(|n| printed < n) {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let interval_ms =
            u64::try_from(now.saturating_duration_since(last).as_millis()).unwrap_or(u64::MAX);
        last = now;
        let taken = counter.take();
        let interface = counter.interface().map_or_else(
            || match &a.interface {
                InterfaceChoice::Named(n) => n.clone(),
                InterfaceChoice::Auto => "auto".into(),
            },
            str::to_string,
        );
        let mut line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "interface": interface,
            "interval_ms": interval_ms,
        });
        match taken {
            Ok(counts) => {
                line["packets"] = counts.iter().sum::<u64>().into();
                line["by_port"] = specs
                    .iter()
                    .cloned()
                    .zip(counts.into_iter().map(serde_json::Value::from))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            Err(e) => {
                // Unknown is not zero: no count at all, and the reason.
                line["packets"] = serde_json::Value::Null;
                line["by_port"] = serde_json::Value::Null;
                line["error"] = e.to_string().into();
            }
        }
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // The reader went away (a closed pipe): nothing left to print to.
            return ExitCode::FAILURE;
        }
        printed += 1;
    }
    ExitCode::SUCCESS
}

/// Asks a game server for its player count and prints it as JSON.
pub async fn probe(args: ProbeArgs) -> ExitCode {
    let kind: ProbeKind = match args.kind.parse() {
        Ok(k) => k,
        Err(m) => return usage("KIND", m),
    };
    let port_ok = args
        .address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if !port_ok {
        return usage(
            "ADDRESS",
            format!(
                "{:?} is not a server address (expected HOST:PORT)",
                args.address
            ),
        );
    }
    let timeout = match parse_duration(&args.timeout) {
        Ok(t) if t > Duration::ZERO && t <= Duration::from_secs(300) => t,
        Ok(_) => {
            return usage(
                "--timeout",
                format!(
                    "{:?} is out of range (expected more than 0 and at most 5m)",
                    args.timeout
                ),
            );
        }
        Err(m) => return usage("--timeout", m),
    };
    match super::query(kind, &args.address, timeout).await {
        Ok(count) => match serde_json::to_string(&count) {
            Ok(json) => {
                let mut out = std::io::stdout();
                if writeln!(out, "{json}").is_err() {
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot print the reply: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("probe failed: {e}");
            ExitCode::FAILURE
        }
    }
}
