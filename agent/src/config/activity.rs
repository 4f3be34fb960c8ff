//! `[activity]`: where packets are counted (interface, port specs) and when quiet means idle.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::check::{Ctx, DAY};
use super::error::ConfigError;
use super::probe::{ProbeConfig, RawProbe};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActivity {
    #[serde(default = "d_interface")]
    interface: String,
    ports: Vec<String>,
    #[serde(default = "d_min_pps")]
    min_packets_per_second: f64,
    #[serde(default = "d_sample_interval")]
    sample_interval: String,
    #[serde(default = "d_idle_after")]
    idle_after: String,
    #[serde(default = "d_boot_grace")]
    boot_grace: String,
    #[serde(default = "d_unused_after")]
    unused_after: String,
    #[serde(default = "d_keep_awake")]
    keep_awake_file: String,
    probe: Option<RawProbe>,
}

fn d_interface() -> String {
    "auto".into()
}
fn d_min_pps() -> f64 {
    2.0
}
fn d_sample_interval() -> String {
    "10s".into()
}
fn d_idle_after() -> String {
    "7m".into()
}
fn d_boot_grace() -> String {
    "10m".into()
}
fn d_unused_after() -> String {
    "5m".into()
}
fn d_keep_awake() -> String {
    "/etc/container-manager/keep-awake".into()
}

/// Which interface to count packets on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceChoice {
    /// The interface of the default route.
    Auto,
    Named(String),
}

/// The transport protocol of a port spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// `udp:N`, `tcp:N`, `udp:N-M` or `tcp:N-M`: destination ports that count as game traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl PortSpec {
    /// Whether a packet of this protocol to this destination port matches.
    pub fn matches(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        };
        if self.first == self.last {
            write!(f, "{p}:{}", self.first)
        } else {
            write!(f, "{p}:{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for PortSpec {
    type Err = String;

    /// Parses a port spec. The error text says what was expected, without the key path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a port range (expected udp:N, tcp:N or udp:N-M)");
        let (proto, ports) = s.split_once(':').ok_or_else(bad)?;
        let protocol = match proto {
            "udp" => Protocol::Udp,
            "tcp" => Protocol::Tcp,
            _ => return Err(bad()),
        };
        let port = |t: &str| -> Result<u16, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match t.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => u16::try_from(n).map_err(|_| bad()),
                _ => Err(bad()),
            }
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(ports)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!(
                "{s:?} is not a port range (the first port {first} is above the last {last})"
            ));
        }
        Ok(Self {
            protocol,
            first,
            last,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityConfig {
    pub interface: InterfaceChoice,
    pub ports: Vec<PortSpec>,
    pub min_packets_per_second: f64,
    pub sample_interval: Duration,
    pub idle_after: Duration,
    pub boot_grace: Duration,
    /// A wake in which no player ever came ends this long after the game is up (`None`: "0s",
    /// off; then only `idle_after` ends it).
    pub unused_after: Option<Duration>,
    pub keep_awake_file: PathBuf,
    pub probe: Option<ProbeConfig>,
}

/// Linux interface names are at most 15 bytes, with no `/`, whitespace or NUL.
fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

impl RawActivity {
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<ActivityConfig, ConfigError> {
        let interface = if self.interface == "auto" {
            InterfaceChoice::Auto
        } else if valid_ifname(&self.interface) {
            InterfaceChoice::Named(self.interface.clone())
        } else {
            return Err(cx.err(
                "activity.interface",
                format!(
                    "{:?} is not an interface name (expected \"auto\" or a name like \"eth0\", at most 15 characters)",
                    self.interface
                ),
            ));
        };
        if self.ports.is_empty() {
            return Err(cx.err(
                "activity.ports",
                "is empty (expected at least one port spec, like \"udp:2456-2458\")",
            ));
        }
        if self.ports.len() > 32 {
            return Err(cx.err(
                "activity.ports",
                format!("has {} entries (expected at most 32)", self.ports.len()),
            ));
        }
        let mut ports = Vec::with_capacity(self.ports.len());
        for (i, p) in self.ports.iter().enumerate() {
            let spec: PortSpec = p
                .parse()
                .map_err(|m: String| cx.err(format!("activity.ports[{i}]"), m))?;
            if ports.contains(&spec) {
                return Err(cx.err(
                    format!("activity.ports[{i}]"),
                    format!("{p:?} is listed twice (expected each port spec once)"),
                ));
            }
            ports.push(spec);
        }
        if !self.min_packets_per_second.is_finite() || self.min_packets_per_second < 0.0 {
            return Err(cx.err(
                "activity.min_packets_per_second",
                format!(
                    "{} is not allowed (expected a number of packets per second, 0 or more)",
                    self.min_packets_per_second
                ),
            ));
        }
        let sample_interval = cx.duration(
            "activity.sample_interval",
            &self.sample_interval,
            Duration::from_millis(100),
            Duration::from_secs(600),
        )?;
        let idle_after =
            cx.duration("activity.idle_after", &self.idle_after, Duration::ZERO, DAY)?;
        if idle_after < sample_interval {
            return Err(cx.err(
                "activity.idle_after",
                format!(
                    "{:?} is shorter than activity.sample_interval {:?} (expected at least one sample interval)",
                    self.idle_after, self.sample_interval
                ),
            ));
        }
        let boot_grace =
            cx.duration("activity.boot_grace", &self.boot_grace, Duration::ZERO, DAY)?;
        let unused_after = cx.duration(
            "activity.unused_after",
            &self.unused_after,
            Duration::ZERO,
            DAY,
        )?;
        if !unused_after.is_zero() && unused_after < sample_interval {
            return Err(cx.err(
                "activity.unused_after",
                format!(
                    "{:?} is shorter than activity.sample_interval {:?} (expected \"0s\" for off, or at least one sample interval)",
                    self.unused_after, self.sample_interval
                ),
            ));
        }
        let keep_awake_file = PathBuf::from(&self.keep_awake_file);
        if !keep_awake_file.is_absolute() {
            return Err(cx.err(
                "activity.keep_awake_file",
                format!(
                    "{:?} is not an absolute path (expected a path starting with /)",
                    self.keep_awake_file
                ),
            ));
        }
        let probe = self
            .probe
            .map(|p| p.validate(cx, sample_interval))
            .transpose()?;
        Ok(ActivityConfig {
            interface,
            ports,
            min_packets_per_second: self.min_packets_per_second,
            sample_interval,
            idle_after,
            boot_grace,
            unused_after: (!unused_after.is_zero()).then_some(unused_after),
            keep_awake_file,
            probe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_rejected, with};
    use super::*;
    use proptest::prelude::*;

    /// Each bad input is rejected with its key path in the message.
    #[test]
    fn bad_inputs_name_their_key() {
        assert_rejected(&[
            (
                with("", "unused_after = \"1s\"", ""),
                "activity.unused_after",
                "at least one sample interval",
            ),
            (
                with("", "unused_after = \"soon\"", ""),
                "activity.unused_after",
                "not a duration",
            ),
            (
                with("", "", "").replace(
                    "ports = [\"udp:2456-2458\"]",
                    "ports = [\"udp:1\", \"udp:70000\"]",
                ),
                "activity.ports[1]",
                "is not a port range",
            ),
            (
                with("", "", "").replace("udp:2456-2458", "udp:9-3"),
                "activity.ports[0]",
                "above the last",
            ),
            (
                with("", "", "").replace("udp:2456-2458", "sctp:9"),
                "activity.ports[0]",
                "expected udp:N",
            ),
            (
                with("", "", "").replace("udp:2456-2458", "udp:0"),
                "activity.ports[0]",
                "is not a port range",
            ),
            (
                with("", "", "").replace("\"udp:2456-2458\"", ""),
                "activity.ports",
                "is empty",
            ),
            (
                with("", "", "").replace("\"udp:2456-2458\"", "\"udp:1\", \"udp:1\""),
                "activity.ports[1]",
                "twice",
            ),
            (with("", "colour = 1", ""), "activity.colour", "unknown key"),
            (
                with("", "min_packets_per_second = -1.0", ""),
                "activity.min_packets_per_second",
                "0 or more",
            ),
            (
                with("", "sample_interval = \"1h\"", ""),
                "activity.sample_interval",
                "out of range",
            ),
            (
                with("", "idle_after = \"5s\"", ""),
                "activity.idle_after",
                "shorter than",
            ),
            (
                with("", "interface = \"a/b\"", ""),
                "activity.interface",
                "not an interface name",
            ),
            (
                with("", "keep_awake_file = \"relative\"", ""),
                "activity.keep_awake_file",
                "absolute",
            ),
        ]);
    }

    proptest! {
        #[test]
        fn port_spec_round_trips(udp in any::<bool>(), a in 1u16..=65535, b in 1u16..=65535) {
            let (first, last) = (a.min(b), a.max(b));
            let spec = PortSpec { protocol: if udp { Protocol::Udp } else { Protocol::Tcp }, first, last };
            let text = spec.to_string();
            prop_assert_eq!(text.parse::<PortSpec>(), Ok(spec));
        }

        #[test]
        fn port_spec_parser_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<PortSpec>();
        }

        #[test]
        fn out_of_range_ports_are_rejected(n in 65536u32..10_000_000) {
            let text = format!("udp:{n}");
            prop_assert!(text.parse::<PortSpec>().is_err());
        }
    }
}
