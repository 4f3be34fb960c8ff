//! Loading and validating `agent.toml`, in two stages.
//!
//! Stage one deserialises the file into `Raw*` structs that mirror the TOML exactly
//! (`deny_unknown_fields`, documented defaults). Stage two, [`RawConfig::validate`], turns
//! them into typed values ([`Config`]) before any I/O starts. Every error names the file, the
//! key path and what was expected, for example
//! `agent.toml: activity.ports[1]: "udp:70000" is not a port range (expected udp:N, tcp:N or udp:N-M)`.
//!
//! One file per table, each with its `Raw*` struct, its defaults, its typed values, its
//! `validate` and its bad-input tests: `container`, `activity`, `probe` (`[activity.probe]`),
//! `dns`, `scaling`, `metrics`, `alerts`, `notify`, `decision_log`. Beside them, `error` (what an error says)
//! and `check` (what every table's stage two uses). This file is the loader: the whole file's
//! raw struct, [`load`] and [`parse`].
//!
//! The documented defaults are each table's `d_*` functions. `agent/examples/agent.toml` shows
//! each one; a unit test checks that the example and these functions agree.

mod activity;
mod alerts;
mod check;
mod container;
mod decision_log;
mod dns;
mod error;
mod metrics;
mod notify;
mod probe;
mod scaling;

use std::path::Path;

use serde::Deserialize;

pub use activity::{ActivityConfig, InterfaceChoice, PortSpec, Protocol};
pub use alerts::AlertsConfig;
pub use check::parse_duration;
pub use container::{ContainerConfig, ContainerSelector};
pub use decision_log::DecisionLogConfig;
pub use dns::DnsConfig;
pub use error::{ConfigError, Position};
pub use metrics::MetricsConfig;
pub use notify::{NotifyConfig, WebhookConfig, WebhookKind};
pub use probe::{ProbeConfig, ProbeKind, check_host_port};
pub use scaling::ScalingConfig;

use activity::RawActivity;
use alerts::RawAlerts;
use check::Ctx;
use container::RawContainer;
use decision_log::RawDecisionLog;
use dns::RawDns;
use error::{describe_serde_error, syntax_error};
use metrics::RawMetrics;
use notify::RawNotify;
use scaling::RawScaling;

/// The exit code for a configuration error (`EX_CONFIG` from sysexits.h). The systemd unit
/// lists it in `RestartPreventExitStatus` so a broken config does not restart in a loop.
pub const EXIT_CONFIG: i32 = 78;

/// The default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/container-manager/agent.toml";

/// The file as written. Every table and key is documented in `agent/examples/agent.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    container: RawContainer,
    activity: RawActivity,
    dns: Option<RawDns>,
    scaling: Option<RawScaling>,
    metrics: Option<RawMetrics>,
    alerts: Option<RawAlerts>,
    notify: Option<RawNotify>,
    decision_log: Option<RawDecisionLog>,
}

/// A validated configuration. Nothing in here can be wrong in a way the agent would only find
/// out later.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, as the user named it (used in messages).
    pub source: String,
    pub container: ContainerConfig,
    pub activity: ActivityConfig,
    pub dns: Option<DnsConfig>,
    pub scaling: Option<ScalingConfig>,
    pub metrics: Option<MetricsConfig>,
    pub alerts: Option<AlertsConfig>,
    /// Webhook targets and the players rate limit; the default has no targets.
    pub notify: NotifyConfig,
    /// Where the decision lines are kept off the instance; `None`: only in the journal.
    pub decision_log: Option<DecisionLogConfig>,
}

impl Config {
    /// Whether anything configured calls AWS (and so needs the instance's identity):
    /// `[dns]`, `[scaling]`, `[metrics]`, `[alerts]` or a webhook (its URL is in SSM).
    pub fn uses_aws(&self) -> bool {
        self.dns.is_some()
            || self.scaling.is_some()
            || self.metrics.is_some()
            || self.alerts.is_some()
            || !self.notify.webhooks.is_empty()
            || self.decision_log.is_some()
    }
}

/// Loads and validates a config file: exactly what `run` and `check-config` do.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        key: "(file)".into(),
        message: format!("cannot read the config file: {e}"),
        at: None,
    })?;
    parse(&file, &text)
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError {
            file: file.to_string(),
            key: if key == "." || key.is_empty() {
                "(top level)".into()
            } else {
                key
            },
            message: describe_serde_error(inner.message()),
            at: None,
        }
    })?;
    raw.validate(file)
}

impl RawConfig {
    /// Stage two: checks every value and turns it into its typed form.
    pub fn validate(self, file: &str) -> Result<Config, ConfigError> {
        let cx = Ctx { file };
        let container = self.container.validate(&cx)?;
        let activity = self.activity.validate(&cx)?;
        let dns = self.dns.map(|d| d.validate(&cx)).transpose()?;
        let scaling = self.scaling.map(|s| s.validate(&cx)).transpose()?;
        let metrics = self.metrics.map(|m| m.validate(&cx)).transpose()?;
        let alerts = match self.alerts {
            Some(a) => a.validate(&cx)?,
            None => None,
        };
        let notify = match self.notify {
            Some(n) => n.validate(&cx)?,
            None => NotifyConfig::default(),
        };
        let decision_log = self.decision_log.map(|d| d.validate(&cx)).transpose()?;
        Ok(Config {
            source: file.to_string(),
            container,
            activity,
            dns,
            scaling,
            metrics,
            alerts,
            notify,
            decision_log,
        })
    }
}

/// What the tables' tests share: a minimal file, a file with a few more keys, and the check that
/// bad input is refused with its key.
#[cfg(test)]
mod testing {
    use super::{ConfigError, parse};

    pub(super) const MINIMAL: &str = r#"
[container]
ecs_container_name = "game"
[activity]
ports = ["udp:2456-2458"]
"#;

    pub(super) fn err(text: &str) -> ConfigError {
        match parse("agent.toml", text) {
            Err(e) => e,
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    pub(super) fn with(extra_container: &str, extra_activity: &str, tables: &str) -> String {
        format!(
            "[container]\necs_container_name = \"game\"\n{extra_container}\n[activity]\nports = [\"udp:2456-2458\"]\n{extra_activity}\n{tables}"
        )
    }

    /// Each `(file, key, needle)`: the file is rejected, the error names `key`, says `needle`
    /// and starts with the file's name.
    pub(super) fn assert_rejected(cases: &[(String, &str, &str)]) {
        for (text, key, needle) in cases {
            let e = err(text);
            assert_eq!(e.key, *key, "for input:\n{text}\ngot: {e}");
            assert!(
                e.to_string().contains(needle),
                "for input:\n{text}\ngot: {e}"
            );
            assert!(e.to_string().starts_with("agent.toml: "), "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::alerts::d_sns_events;
    use super::dns::d_ttl;
    use super::testing::{MINIMAL, assert_rejected, with};
    use super::*;
    use crate::decide::EventKind;

    #[test]
    fn example_file_parses_and_shows_every_default() {
        let text = include_str!("../../examples/agent.toml");
        let c = parse("agent.toml", text).unwrap();
        let m = parse("agent.toml", MINIMAL).unwrap();
        // The example writes every default out; the same file with only the required keys
        // must give the same values where the example does not set its own.
        assert_eq!(c.container.stop_timeout, m.container.stop_timeout);
        assert_eq!(
            c.container.crashes_before_shutdown,
            m.container.crashes_before_shutdown
        );
        assert_eq!(c.container.alert_log_lines, m.container.alert_log_lines);
        assert_eq!(c.container.pre_stop_command, m.container.pre_stop_command);
        assert_eq!(c.container.start_within, m.container.start_within);
        assert_eq!(c.activity.interface, m.activity.interface);
        assert_eq!(
            c.activity.min_packets_per_second,
            m.activity.min_packets_per_second
        );
        assert_eq!(c.activity.sample_interval, m.activity.sample_interval);
        assert_eq!(c.activity.idle_after, m.activity.idle_after);
        assert_eq!(c.activity.boot_grace, m.activity.boot_grace);
        assert_eq!(c.activity.unused_after, m.activity.unused_after);
        assert_eq!(c.activity.keep_awake_file, m.activity.keep_awake_file);
        let d = c.dns.as_ref().unwrap();
        assert_eq!(d.ttl, d_ttl());
        assert_eq!(d.unavailable_ipv4, Ipv4Addr::UNSPECIFIED);
        assert!(!d.ipv6);
        let s = c.scaling.as_ref().unwrap();
        assert_eq!(s.max_uptime, Duration::from_secs(8 * 3600));
        assert!(!s.stop_on_max_uptime);
        assert!(
            s.max_uptime_backstop,
            "the all-night backstop is on by default"
        );
        assert_eq!(s.auto_scaling_group, None);
        assert_eq!(s.lifecycle_hook, None);
        assert_eq!(c.notify, NotifyConfig::default());
        let with_topic = text.replace(
            "sns_topic_arn = \"\"",
            "sns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\"",
        );
        let alerts = parse("agent.toml", &with_topic).unwrap().alerts.unwrap();
        let defaults: Vec<_> = d_sns_events()
            .iter()
            .filter_map(|n| EventKind::from_name(n))
            .collect();
        assert_eq!(alerts.events, defaults);
        let me = c.metrics.as_ref().unwrap();
        assert_eq!(me.namespace, "ContainerManager");
        assert_eq!(me.interval, Duration::from_secs(60));
        assert_eq!(c.alerts, None);
        let d = c.decision_log.as_ref().unwrap();
        assert_eq!(
            d.interval.as_secs().to_string() + "s",
            super::decision_log::d_interval()
        );
        let p = c.activity.probe.as_ref().unwrap();
        assert_eq!(p.kind, ProbeKind::A2s);
        assert_eq!(p.timeout, Duration::from_secs(2));
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = parse("agent.toml", MINIMAL).unwrap();
        assert_eq!(
            c.container.selector,
            ContainerSelector::EcsContainerName("game".into())
        );
        assert_eq!(c.container.stop_timeout, Duration::from_secs(120));
        assert_eq!(c.container.crashes_before_shutdown, 1);
        assert_eq!(c.container.alert_log_lines, 20);
        assert_eq!(c.container.start_within, Some(Duration::from_secs(600)));
        let off = parse("agent.toml", &with("start_within = \"0s\"", "", "")).unwrap();
        assert_eq!(off.container.start_within, None, "0s turns the check off");
        assert_eq!(c.activity.interface, InterfaceChoice::Auto);
        assert_eq!(c.activity.min_packets_per_second, 2.0);
        assert_eq!(c.activity.sample_interval, Duration::from_secs(10));
        assert_eq!(c.activity.idle_after, Duration::from_secs(420));
        assert_eq!(c.activity.boot_grace, Duration::from_secs(600));
        assert_eq!(c.activity.unused_after, Some(Duration::from_secs(300)));
        assert_eq!(
            c.activity.keep_awake_file,
            PathBuf::from("/etc/container-manager/keep-awake")
        );
        assert!(c.activity.probe.is_none());
        assert!(
            c.dns.is_none() && c.scaling.is_none() && c.metrics.is_none() && c.alerts.is_none()
        );
        assert!(!c.uses_aws());
        let hook = with(
            "",
            "",
            "[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"/cm/hook\"",
        );
        assert!(
            parse("agent.toml", &hook).unwrap().uses_aws(),
            "the URL is in SSM"
        );
    }

    #[test]
    fn every_key_is_parsed() {
        let text = r#"
[container]
docker_name = "valheim"
stop_timeout = "45s"
pre_stop_command = ["rcon-cli", "save"]
crashes_before_shutdown = 3
alert_log_lines = 7
[activity]
interface = "ens5"
ports = ["udp:2456-2458", "tcp:25565"]
min_packets_per_second = 0.5
sample_interval = "5s"
idle_after = "1h30m"
boot_grace = "0s"
keep_awake_file = "/run/keep"
[activity.probe]
kind = "minecraft"
address = "localhost:25565"
timeout = "1500ms"
[dns]
hosted_zone_id = "/hostedzone/Z123"
record_name = "MC.Example.com."
ttl = 30
unavailable_ipv4 = "192.0.2.1"
ipv6 = true
[scaling]
auto_scaling_group = "asg-1"
lifecycle_hook = "drain"
max_uptime = "2d"
stop_on_max_uptime = true
max_uptime_backstop = false
[metrics]
namespace = "Games"
interval = "30s"
[alerts]
sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:alerts"
"#;
        let c = parse("a.toml", text).unwrap();
        assert_eq!(
            c.container.selector,
            ContainerSelector::DockerName("valheim".into())
        );
        assert_eq!(c.container.stop_timeout, Duration::from_secs(45));
        assert_eq!(c.container.pre_stop_command, vec!["rcon-cli", "save"]);
        assert_eq!(c.container.crashes_before_shutdown, 3);
        assert_eq!(c.container.alert_log_lines, 7);
        assert_eq!(c.activity.interface, InterfaceChoice::Named("ens5".into()));
        assert_eq!(c.activity.ports.len(), 2);
        assert_eq!(c.activity.ports[1].to_string(), "tcp:25565");
        assert_eq!(c.activity.min_packets_per_second, 0.5);
        assert_eq!(c.activity.sample_interval, Duration::from_secs(5));
        assert_eq!(c.activity.idle_after, Duration::from_secs(5400));
        assert_eq!(c.activity.boot_grace, Duration::ZERO);
        assert_eq!(c.activity.keep_awake_file, PathBuf::from("/run/keep"));
        let p = c.activity.probe.unwrap();
        assert_eq!(
            (p.kind, p.address.as_str(), p.timeout),
            (
                ProbeKind::Minecraft,
                "localhost:25565",
                Duration::from_millis(1500)
            )
        );
        let d = c.dns.unwrap();
        assert_eq!(d.hosted_zone_id, "Z123");
        assert_eq!(d.record_name, "mc.example.com");
        assert_eq!(d.ttl, 30);
        assert_eq!(d.unavailable_ipv4, Ipv4Addr::new(192, 0, 2, 1));
        assert!(d.ipv6);
        let s = c.scaling.unwrap();
        assert_eq!(s.auto_scaling_group.as_deref(), Some("asg-1"));
        assert_eq!(s.lifecycle_hook.as_deref(), Some("drain"));
        assert_eq!(s.max_uptime, Duration::from_secs(172_800));
        assert!(s.stop_on_max_uptime);
        assert!(!s.max_uptime_backstop);
        let m = c.metrics.unwrap();
        assert_eq!(
            (m.namespace.as_str(), m.interval),
            ("Games", Duration::from_secs(30))
        );
        assert_eq!(
            c.alerts.unwrap().sns_topic_arn,
            "arn:aws:sns:eu-west-1:123456789012:alerts"
        );
    }

    /// Each bad input is rejected with its key path in the message: the tables and keys the
    /// file as a whole allows.
    #[test]
    fn bad_inputs_name_their_key() {
        assert_rejected(&[
            (with("", "", "[extra]\na = 1"), "extra", "unknown key"),
            (
                "[activity]\nports = [\"udp:1\"]".to_string(),
                "(top level)",
                "missing required key `container`",
            ),
        ]);
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let e = load(Path::new("/nonexistent/agent.toml")).unwrap_err();
        assert_eq!(e.key, "(file)");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/agent.toml: (file): cannot read")
        );
    }
}
