//! `[activity.probe]`: how the game is asked for its player count.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::check::Ctx;
use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    kind: String,
    address: String,
    #[serde(default = "d_probe_timeout")]
    timeout: String,
}

fn d_probe_timeout() -> String {
    "2s".into()
}

/// Which game protocol to ask for the player count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Steam's A2S_INFO query.
    A2s,
    /// Minecraft Java Edition's server-list ping.
    Minecraft,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A2s => "a2s",
            Self::Minecraft => "minecraft",
        })
    }
}

impl std::str::FromStr for ProbeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "a2s" => Ok(Self::A2s),
            "minecraft" => Ok(Self::Minecraft),
            _ => Err(format!(
                "{s:?} is not a probe kind (expected \"a2s\" or \"minecraft\")"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    /// `host:port`; the host may be a name, resolved at each probe.
    pub address: String,
    pub timeout: Duration,
}

/// Checks `host:port` or `[v6]:port` without resolving the name.
pub fn check_host_port(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not an address (expected host:port, like 127.0.0.1:2457)");
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = matches!(port.parse::<u16>(), Ok(p) if p > 0);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

impl RawProbe {
    pub(super) fn validate(
        self,
        cx: &Ctx<'_>,
        sample_interval: Duration,
    ) -> Result<ProbeConfig, ConfigError> {
        let kind = self
            .kind
            .parse()
            .map_err(|m: String| cx.err("activity.probe.kind", m))?;
        check_host_port(&self.address).map_err(|m| cx.err("activity.probe.address", m))?;
        let timeout = cx.duration(
            "activity.probe.timeout",
            &self.timeout,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        if timeout > sample_interval {
            return Err(cx.err(
                "activity.probe.timeout",
                format!(
                    "{:?} is longer than activity.sample_interval (expected at most one sample interval)",
                    self.timeout
                ),
            ));
        }
        Ok(ProbeConfig {
            kind,
            address: self.address,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_rejected, with};

    /// Each bad input is rejected with its key path in the message.
    #[test]
    fn bad_inputs_name_their_key() {
        assert_rejected(&[
            (
                with(
                    "",
                    "[activity.probe]\nkind = \"quake\"\naddress = \"127.0.0.1:1\"",
                    "",
                ),
                "activity.probe.kind",
                "expected \"a2s\"",
            ),
            (
                with(
                    "",
                    "[activity.probe]\nkind = \"a2s\"\naddress = \"nohost\"",
                    "",
                ),
                "activity.probe.address",
                "host:port",
            ),
            (
                with(
                    "",
                    "[activity.probe]\nkind = \"a2s\"\naddress = \"h:1\"\ntimeout = \"1m\"",
                    "",
                ),
                "activity.probe.timeout",
                "sample interval",
            ),
            (
                with("", "[activity.probe]\nkind = \"a2s\"", ""),
                "activity.probe",
                "missing required key `address`",
            ),
        ]);
    }
}
