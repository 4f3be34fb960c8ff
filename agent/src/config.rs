//! Loading and validating `agent.toml`, in two stages.
//!
//! Stage one deserialises the file into `Raw*` structs that mirror the TOML exactly
//! (`deny_unknown_fields`, documented defaults). Stage two, [`RawConfig::validate`], turns
//! them into typed values ([`Config`]) before any I/O starts. Every error names the file, the
//! key path and what was expected, for example
//! `agent.toml: activity.ports[1]: "udp:70000" is not a port range (expected udp:N, tcp:N or udp:N-M)`.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decide::EventKind;

use serde::Deserialize;

/// The exit code for a configuration error (`EX_CONFIG` from sysexits.h). The systemd unit
/// lists it in `RestartPreventExitStatus` so a broken config does not restart in a loop.
pub const EXIT_CONFIG: i32 = 78;

/// The default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/container-manager/agent.toml";

/// A configuration error: which file, which key, what was wrong.
///
/// Displayed as `FILE: KEY: MESSAGE`. A TOML syntax error has a position instead of a key,
/// and shows the line with a caret under the column:
///
/// ```text
/// agent.toml: line 4, column 7: not valid TOML: extra `=`, expected nothing
///   4 | ttl = = 1
///     |       ^
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file as the user named it.
    pub file: String,
    /// The dotted key path, for example `activity.ports[1]`; `line L, column C` for a TOML
    /// syntax error; `(file)` for the file itself.
    pub key: String,
    /// What was found and what was expected.
    pub message: String,
    /// Where a TOML syntax error is; `None` for every other error.
    pub at: Option<Position>,
}

/// A place in the config text, for syntax errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (a tab is one).
    pub column: usize,
    /// The whole line, without its line ending.
    pub text: String,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        Self {
            line: text[..start].matches('\n').count() + 1,
            column: text[start..offset].chars().count() + 1,
            text: text[start..end].trim_end_matches('\r').to_string(),
        }
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.message)?;
        if let Some(at) = &self.at {
            // Keep tabs in the caret line so the caret lines up under a tab-indented line.
            let pad: String = at
                .text
                .chars()
                .take(at.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let gutter = " ".repeat(at.line.to_string().len());
            write!(f, "\n  {} | {}\n  {gutter} | {pad}^", at.line, at.text)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Stage one: the file as written.
// ---------------------------------------------------------------------------------------------

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    ecs_container_name: Option<String>,
    docker_name: Option<String>,
    #[serde(default = "d_stop_timeout")]
    stop_timeout: String,
    #[serde(default)]
    pre_stop_command: Vec<String>,
    #[serde(default = "d_crashes")]
    crashes_before_shutdown: i64,
    #[serde(default = "d_log_lines")]
    alert_log_lines: i64,
    #[serde(default)]
    image: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivity {
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
    #[serde(default = "d_keep_awake")]
    keep_awake_file: String,
    probe: Option<RawProbe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    kind: String,
    address: String,
    #[serde(default = "d_probe_timeout")]
    timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    hosted_zone_id: String,
    record_name: String,
    #[serde(default = "d_ttl")]
    ttl: i64,
    #[serde(default = "d_unavailable")]
    unavailable_ipv4: String,
    #[serde(default)]
    ipv6: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaling {
    #[serde(default)]
    auto_scaling_group: String,
    #[serde(default)]
    lifecycle_hook: String,
    #[serde(default)]
    launch_hook: String,
    #[serde(default = "d_max_uptime")]
    max_uptime: String,
    #[serde(default)]
    stop_on_max_uptime: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default = "d_namespace")]
    namespace: String,
    #[serde(default = "d_metrics_interval")]
    interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    sns_topic_arn: String,
    #[serde(default = "d_sns_events")]
    events: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default = "d_players_every")]
    players_every: String,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    kind: String,
    url_parameter: String,
    #[serde(default = "d_webhook_events")]
    events: Vec<String>,
}

// The documented defaults. `agent/examples/agent.toml` shows each one; a unit test checks that
// the example and these functions agree.
fn d_stop_timeout() -> String {
    "120s".into()
}
fn d_crashes() -> i64 {
    1
}
fn d_log_lines() -> i64 {
    20
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
fn d_keep_awake() -> String {
    "/etc/container-manager/keep-awake".into()
}
fn d_probe_timeout() -> String {
    "2s".into()
}
fn d_ttl() -> i64 {
    1
}
fn d_unavailable() -> String {
    "0.0.0.0".into()
}
fn d_max_uptime() -> String {
    "8h".into()
}
fn d_namespace() -> String {
    "ContainerManager".into()
}
fn d_metrics_interval() -> String {
    "60s".into()
}
fn d_sns_events() -> Vec<String> {
    ["idle_stop", "crash", "max_uptime", "needs_operator"]
        .map(String::from)
        .to_vec()
}
fn d_webhook_events() -> Vec<String> {
    [
        "online",
        "idle_stop",
        "crash",
        "max_uptime",
        "needs_operator",
    ]
    .map(String::from)
    .to_vec()
}
fn d_players_every() -> String {
    "5m".into()
}

// ---------------------------------------------------------------------------------------------
// Stage two: typed, validated values.
// ---------------------------------------------------------------------------------------------

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
}

/// How the game container is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerSelector {
    /// By the ECS label `com.amazonaws.ecs.container-name`.
    EcsContainerName(String),
    /// By the plain Docker container name.
    DockerName(String),
}

impl fmt::Display for ContainerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcsContainerName(n) => write!(f, "ECS container {n:?}"),
            Self::DockerName(n) => write!(f, "Docker container {n:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub selector: ContainerSelector,
    pub stop_timeout: Duration,
    pub pre_stop_command: Vec<String>,
    pub crashes_before_shutdown: u32,
    pub alert_log_lines: usize,
    /// The game's image, pulled while the instance is prepared for a warm pool. `None`: none.
    pub image: Option<String>,
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
    pub keep_awake_file: PathBuf,
    pub probe: Option<ProbeConfig>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The zone id without any `/hostedzone/` prefix.
    pub hosted_zone_id: String,
    /// The record name, lower case, without a trailing dot.
    pub record_name: String,
    pub ttl: i64,
    pub unavailable_ipv4: Ipv4Addr,
    pub ipv6: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingConfig {
    /// `None`: look the group up from the instance id.
    pub auto_scaling_group: Option<String>,
    /// `None`: no termination hook to complete.
    pub lifecycle_hook: Option<String>,
    /// The launching hook (warm pools): completed once the instance is prepared for the pool,
    /// and as soon as it enters service. `None`: no launching hook.
    pub launch_hook: Option<String>,
    pub max_uptime: Duration,
    pub stop_on_max_uptime: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub namespace: String,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    pub sns_topic_arn: String,
    /// The events sent to the topic.
    pub events: Vec<EventKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// At most one `players` notification per this long (the latest count wins).
    pub players_every: Duration,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            players_every: Duration::from_secs(300),
            webhooks: Vec::new(),
        }
    }
}

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// Discord's execute-webhook body: one embed.
    Discord,
    /// Slack's incoming-webhook body: text plus blocks.
    Slack,
    /// A plain JSON object (ntfy, Home Assistant, anything else).
    Json,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discord => "discord",
            Self::Slack => "slack",
            Self::Json => "json",
        }
    }
}

/// One webhook target. The URL itself is a secret: only the name of the SSM SecureString
/// parameter that holds it is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub kind: WebhookKind,
    pub url_parameter: String,
    pub events: Vec<EventKind>,
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
    }
}

/// Parses a duration written like `90s`, `7m`, `8h`, `1h30m`, `500ms` or `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || {
        format!("{s:?} is not a duration (expected a number and a unit, like 90s, 7m, 8h or 1h30m)")
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(expected());
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| expected())?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or_else(expected)?,
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(expected)?,
            "d" => n
                .checked_mul(86_400)
                .map(Duration::from_secs)
                .ok_or_else(expected)?,
            _ => return Err(expected()),
        };
        total = total.checked_add(part).ok_or_else(expected)?;
        rest = tail;
    }
    Ok(total)
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

/// A TOML syntax error at its line and column. The parser's "duplicate key" does not say
/// which key: the text at the position does.
fn syntax_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let mut message = format!("not valid TOML: {}", one_line(e.message()));
    let Some(span) = e.span() else {
        return ConfigError {
            file: file.to_string(),
            key: "(file)".into(),
            message,
            at: None,
        };
    };
    let at = Position::of(text, span.start);
    if e.message() == "duplicate key"
        && let Some(key) = text
            .get(span)
            .filter(|k| !k.is_empty() && !k.contains('\n'))
    {
        message = format!(
            "not valid TOML: duplicate key `{key}` (each key and table may be defined only once)"
        );
    }
    ConfigError {
        file: file.to_string(),
        key: format!("line {}, column {}", at.line, at.column),
        message,
        at: Some(at),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// serde's messages say "unknown field" and "missing field"; our users write keys.
fn describe_serde_error(msg: &str) -> String {
    let msg = one_line(msg);
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    msg
}

/// Collects the context for stage-two errors.
struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
            at: None,
        }
    }

    fn duration(
        &self,
        key: &str,
        value: &str,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = parse_duration(value).map_err(|m| self.err(key, m))?;
        if d < min || d > max {
            return Err(self.err(
                key,
                format!(
                    "{value:?} is out of range (expected between {} and {})",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(d)
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

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
        Ok(Config {
            source: file.to_string(),
            container,
            activity,
            dns,
            scaling,
            metrics,
            alerts,
            notify,
        })
    }
}

fn non_empty_name(cx: &Ctx<'_>, key: &str, v: &str) -> Result<String, ConfigError> {
    if v.trim().is_empty() {
        return Err(cx.err(key, "must not be empty (expected a container name)"));
    }
    Ok(v.to_string())
}

impl RawContainer {
    fn validate(self, cx: &Ctx<'_>) -> Result<ContainerConfig, ConfigError> {
        let selector = match (self.ecs_container_name, self.docker_name) {
            (Some(n), None) => ContainerSelector::EcsContainerName(non_empty_name(
                cx,
                "container.ecs_container_name",
                &n,
            )?),
            (None, Some(n)) => {
                ContainerSelector::DockerName(non_empty_name(cx, "container.docker_name", &n)?)
            }
            (Some(_), Some(_)) => {
                return Err(cx.err(
                    "container",
                    "both ecs_container_name and docker_name are set (expected exactly one)",
                ));
            }
            (None, None) => {
                return Err(cx.err(
                    "container",
                    "neither ecs_container_name nor docker_name is set (expected exactly one)",
                ));
            }
        };
        let stop_timeout = cx.duration(
            "container.stop_timeout",
            &self.stop_timeout,
            Duration::from_secs(1),
            HOUR,
        )?;
        if let Some(first) = self.pre_stop_command.first()
            && first.trim().is_empty()
        {
            return Err(cx.err(
                "container.pre_stop_command[0]",
                "the program name is empty (expected e.g. [\"rcon-cli\", \"save-all\"])",
            ));
        }
        let crashes_before_shutdown = match u32::try_from(self.crashes_before_shutdown) {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(cx.err(
                    "container.crashes_before_shutdown",
                    format!(
                        "{} is out of range (expected a whole number from 1 to 100)",
                        self.crashes_before_shutdown
                    ),
                ));
            }
        };
        let alert_log_lines = match usize::try_from(self.alert_log_lines) {
            Ok(n) if n <= 1000 => n,
            _ => {
                return Err(cx.err(
                    "container.alert_log_lines",
                    format!(
                        "{} is out of range (expected a whole number from 0 to 1000)",
                        self.alert_log_lines
                    ),
                ));
            }
        };
        let image = optional(self.image);
        if let Some(i) = &image
            && (i.len() > 255
                || i.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
        {
            return Err(cx.err(
                "container.image",
                format!("{i:?} is not an image reference (expected for example repo/name:tag)"),
            ));
        }
        Ok(ContainerConfig {
            selector,
            stop_timeout,
            pre_stop_command: self.pre_stop_command,
            crashes_before_shutdown,
            alert_log_lines,
            image,
        })
    }
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
    fn validate(self, cx: &Ctx<'_>) -> Result<ActivityConfig, ConfigError> {
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
            keep_awake_file,
            probe,
        })
    }
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
    fn validate(self, cx: &Ctx<'_>, sample_interval: Duration) -> Result<ProbeConfig, ConfigError> {
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

fn valid_record_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl RawDns {
    fn validate(self, cx: &Ctx<'_>) -> Result<DnsConfig, ConfigError> {
        let zone = self
            .hosted_zone_id
            .trim_start_matches("/hostedzone/")
            .to_string();
        if zone.is_empty() || zone.len() > 32 || !zone.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(cx.err(
                "dns.hosted_zone_id",
                format!(
                    "{:?} is not a hosted zone id (expected letters and digits, like \"Z0123456789ABC\")",
                    self.hosted_zone_id
                ),
            ));
        }
        let record = self.record_name.trim_end_matches('.').to_ascii_lowercase();
        if !valid_record_name(&record) {
            return Err(cx.err(
                "dns.record_name",
                format!(
                    "{:?} is not a DNS name (expected a name like \"valheim.example.com\")",
                    self.record_name
                ),
            ));
        }
        if !(0..=86_400).contains(&self.ttl) {
            return Err(cx.err(
                "dns.ttl",
                format!(
                    "{} is out of range (expected seconds from 0 to 86400)",
                    self.ttl
                ),
            ));
        }
        let unavailable_ipv4: Ipv4Addr = self.unavailable_ipv4.parse().map_err(|_| {
            cx.err(
                "dns.unavailable_ipv4",
                format!(
                    "{:?} is not an IPv4 address (expected e.g. \"0.0.0.0\")",
                    self.unavailable_ipv4
                ),
            )
        })?;
        Ok(DnsConfig {
            hosted_zone_id: zone,
            record_name: record,
            ttl: self.ttl,
            unavailable_ipv4,
            ipv6: self.ipv6,
        })
    }
}

fn optional(s: String) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

impl RawScaling {
    fn validate(self, cx: &Ctx<'_>) -> Result<ScalingConfig, ConfigError> {
        let max_uptime = cx.duration(
            "scaling.max_uptime",
            &self.max_uptime,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        )?;
        let group = optional(self.auto_scaling_group);
        if let Some(g) = &group
            && g.len() > 255
        {
            return Err(cx.err(
                "scaling.auto_scaling_group",
                "is longer than 255 characters (expected an Auto Scaling group name)",
            ));
        }
        let hook_name = |key: &str, value: String| {
            let hook = optional(value);
            if let Some(h) = &hook
                && (h.len() > 255
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b)))
            {
                return Err(cx.err(
                    key,
                    format!(
                        "{h:?} is not a lifecycle hook name (expected letters, digits, -, _ or /)"
                    ),
                ));
            }
            Ok(hook)
        };
        let hook = hook_name("scaling.lifecycle_hook", self.lifecycle_hook)?;
        let launch_hook = hook_name("scaling.launch_hook", self.launch_hook)?;
        Ok(ScalingConfig {
            auto_scaling_group: group,
            lifecycle_hook: hook,
            launch_hook,
            max_uptime,
            stop_on_max_uptime: self.stop_on_max_uptime,
        })
    }
}

impl RawMetrics {
    fn validate(self, cx: &Ctx<'_>) -> Result<MetricsConfig, ConfigError> {
        let ns = self.namespace.trim();
        if ns.is_empty() || ns.len() > 255 || ns.starts_with("AWS/") || ns.starts_with(':') {
            return Err(cx.err(
                "metrics.namespace",
                format!(
                    "{:?} is not a usable namespace (expected a name like \"ContainerManager\", not starting with AWS/)",
                    self.namespace
                ),
            ));
        }
        let interval = cx.duration(
            "metrics.interval",
            &self.interval,
            Duration::from_secs(1),
            HOUR,
        )?;
        Ok(MetricsConfig {
            namespace: ns.to_string(),
            interval,
        })
    }
}

impl RawAlerts {
    fn validate(self, cx: &Ctx<'_>) -> Result<Option<AlertsConfig>, ConfigError> {
        let Some(arn) = optional(self.sns_topic_arn) else {
            return Ok(None);
        };
        let parts: Vec<&str> = arn.split(':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "sns"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && !parts[5].is_empty();
        if !ok {
            return Err(cx.err(
                "alerts.sns_topic_arn",
                format!(
                    "{arn:?} is not an SNS topic ARN (expected arn:aws:sns:REGION:ACCOUNT:NAME, or empty for no alerts)"
                ),
            ));
        }
        let events = events(cx, "alerts.events", &self.events)?;
        Ok(Some(AlertsConfig {
            sns_topic_arn: arn,
            events,
        }))
    }
}

/// A list of event names, each known, without duplicates.
fn events(cx: &Ctx<'_>, key: &str, names: &[String]) -> Result<Vec<EventKind>, ConfigError> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(kind) = EventKind::from_name(name) else {
            return Err(cx.err(
                format!("{key}[{i}]"),
                format!(
                    "{name:?} is not an event (expected one of {})",
                    EventKind::ALL.map(EventKind::as_str).join(", ")
                ),
            ));
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

impl RawNotify {
    fn validate(self, cx: &Ctx<'_>) -> Result<NotifyConfig, ConfigError> {
        let players_every = cx.duration(
            "notify.players_every",
            &self.players_every,
            Duration::from_secs(10),
            DAY,
        )?;
        if self.webhook.len() > 8 {
            return Err(cx.err(
                "notify.webhook",
                format!("{} targets (expected at most 8)", self.webhook.len()),
            ));
        }
        let webhooks = self
            .webhook
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.validate(cx, i))
            .collect::<Result<_, _>>()?;
        Ok(NotifyConfig {
            players_every,
            webhooks,
        })
    }
}

impl RawWebhook {
    fn validate(self, cx: &Ctx<'_>, i: usize) -> Result<WebhookConfig, ConfigError> {
        let key = |k: &str| format!("notify.webhook[{i}].{k}");
        let kind = match self.kind.as_str() {
            "discord" => WebhookKind::Discord,
            "slack" => WebhookKind::Slack,
            "json" => WebhookKind::Json,
            other => {
                return Err(cx.err(
                    key("kind"),
                    format!("{other:?} is not a webhook kind (expected discord, slack or json)"),
                ));
            }
        };
        let url_parameter =
            ssm_parameter_name(&self.url_parameter).map_err(|m| cx.err(key("url_parameter"), m))?;
        let events = events(cx, &key("events"), &self.events)?;
        Ok(WebhookConfig {
            kind,
            url_parameter,
            events,
        })
    }
}

/// An SSM parameter name: `/path/name` or `name`, of letters, digits and `_.-/`. A value that
/// looks like the URL itself is refused without repeating it: the URL is a secret.
fn ssm_parameter_name(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") || lower.contains("://") {
        return Err(
            "holds a URL (not repeated here: it is a secret); expected the name of an SSM SecureString parameter that holds the URL, like \"/container-manager/discord-webhook\""
                .to_string(),
        );
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
    let valid_shape = !name.is_empty()
        && name.len() <= 2011
        && (!name.contains('/') || name.starts_with('/'))
        && !name.ends_with('/')
        && !name.contains("//");
    if !valid_chars || !valid_shape {
        return Err(format!(
            "{name:?} is not an SSM parameter name (expected /path/name or name, of letters, digits and _.-/)"
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINIMAL: &str = r#"
[container]
ecs_container_name = "game"
[activity]
ports = ["udp:2456-2458"]
"#;

    fn err(text: &str) -> ConfigError {
        match parse("agent.toml", text) {
            Err(e) => e,
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    fn with(extra_container: &str, extra_activity: &str, tables: &str) -> String {
        format!(
            "[container]\necs_container_name = \"game\"\n{extra_container}\n[activity]\nports = [\"udp:2456-2458\"]\n{extra_activity}\n{tables}"
        )
    }

    #[test]
    fn example_file_parses_and_shows_every_default() {
        let text = include_str!("../examples/agent.toml");
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
        assert_eq!(c.activity.interface, m.activity.interface);
        assert_eq!(
            c.activity.min_packets_per_second,
            m.activity.min_packets_per_second
        );
        assert_eq!(c.activity.sample_interval, m.activity.sample_interval);
        assert_eq!(c.activity.idle_after, m.activity.idle_after);
        assert_eq!(c.activity.boot_grace, m.activity.boot_grace);
        assert_eq!(c.activity.keep_awake_file, m.activity.keep_awake_file);
        let d = c.dns.as_ref().unwrap();
        assert_eq!(d.ttl, d_ttl());
        assert_eq!(d.unavailable_ipv4, Ipv4Addr::UNSPECIFIED);
        assert!(!d.ipv6);
        let s = c.scaling.as_ref().unwrap();
        assert_eq!(s.max_uptime, Duration::from_secs(8 * 3600));
        assert!(!s.stop_on_max_uptime);
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
        assert_eq!(c.activity.interface, InterfaceChoice::Auto);
        assert_eq!(c.activity.min_packets_per_second, 2.0);
        assert_eq!(c.activity.sample_interval, Duration::from_secs(10));
        assert_eq!(c.activity.idle_after, Duration::from_secs(420));
        assert_eq!(c.activity.boot_grace, Duration::from_secs(600));
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

    /// Each bad input is rejected with its key path in the message.
    #[test]
    fn bad_inputs_name_their_key() {
        let cases: Vec<(String, &str, &str)> = vec![
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
            (with("bogus = 1", "", ""), "container.bogus", "unknown key"),
            (with("", "colour = 1", ""), "activity.colour", "unknown key"),
            (
                with(
                    "",
                    "",
                    "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a.b\"\nttls = 3",
                ),
                "dns.ttls",
                "unknown key",
            ),
            (with("", "", "[extra]\na = 1"), "extra", "unknown key"),
            (
                with("stop_timeout = \"soon\"", "", ""),
                "container.stop_timeout",
                "not a duration",
            ),
            (
                with("stop_timeout = \"0s\"", "", ""),
                "container.stop_timeout",
                "out of range",
            ),
            (
                with("stop_timeout = 120", "", ""),
                "container.stop_timeout",
                "invalid type",
            ),
            (
                with("docker_name = \"x\"", "", ""),
                "container",
                "exactly one",
            ),
            (
                with("crashes_before_shutdown = 0", "", ""),
                "container.crashes_before_shutdown",
                "1 to 100",
            ),
            (
                with("alert_log_lines = -1", "", ""),
                "container.alert_log_lines",
                "0 to 1000",
            ),
            (
                with("pre_stop_command = [\"\"]", "", ""),
                "container.pre_stop_command[0]",
                "empty",
            ),
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
            (
                with(
                    "",
                    "",
                    "[dns]\nhosted_zone_id = \"Z-1\"\nrecord_name = \"a.b\"",
                ),
                "dns.hosted_zone_id",
                "hosted zone id",
            ),
            (
                with(
                    "",
                    "",
                    "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a..b\"",
                ),
                "dns.record_name",
                "DNS name",
            ),
            (
                with(
                    "",
                    "",
                    "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a.b\"\nttl = -5",
                ),
                "dns.ttl",
                "0 to 86400",
            ),
            (
                with(
                    "",
                    "",
                    "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a.b\"\nunavailable_ipv4 = \"::\"",
                ),
                "dns.unavailable_ipv4",
                "IPv4",
            ),
            (
                with("", "", "[dns]\nrecord_name = \"a.b\""),
                "dns",
                "missing required key `hosted_zone_id`",
            ),
            (
                with("", "", "[scaling]\nmax_uptime = \"10s\""),
                "scaling.max_uptime",
                "out of range",
            ),
            (
                with("", "", "[scaling]\nlifecycle_hook = \"a b\""),
                "scaling.lifecycle_hook",
                "lifecycle hook name",
            ),
            (
                with("", "", "[scaling]\nstop_on_max_uptime = \"yes\""),
                "scaling.stop_on_max_uptime",
                "invalid type",
            ),
            (
                with("", "", "[metrics]\nnamespace = \"AWS/EC2\""),
                "metrics.namespace",
                "AWS/",
            ),
            (
                with("", "", "[metrics]\ninterval = \"2h\""),
                "metrics.interval",
                "out of range",
            ),
            (
                with("", "", "[alerts]\nsns_topic_arn = \"topic\""),
                "alerts.sns_topic_arn",
                "SNS topic ARN",
            ),
            (
                "[activity]\nports = [\"udp:1\"]".to_string(),
                "(top level)",
                "missing required key `container`",
            ),
            (
                with(
                    "",
                    "",
                    "[alerts]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\"\nevents = [\"crash\", \"online!\"]",
                ),
                "alerts.events[1]",
                "is not an event (expected one of online, players, idle_stop, crash, max_uptime, needs_operator)",
            ),
            (
                with("", "", "[notify]\nplayers_every = \"1s\""),
                "notify.players_every",
                "out of range",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"teams\"\nurl_parameter = \"/cm/hook\"",
                ),
                "notify.webhook[0].kind",
                "expected discord, slack or json",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"slack\"\nurl_parameter = \"/cm/hook\"\n[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"cm/hook\"",
                ),
                "notify.webhook[1].url_parameter",
                "is not an SSM parameter name",
            ),
            (
                with("", "", "[[notify.webhook]]\nkind = \"discord\""),
                "notify.webhook[0]",
                "missing required key `url_parameter`",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"/cm/hook\"\nevents = [\"idle\"]",
                ),
                "notify.webhook[0].events[0]",
                "\"idle\" is not an event",
            ),
            (
                with(
                    "",
                    "",
                    "[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"/cm/hook\"\nurl = \"x\"",
                ),
                "notify.webhook[0].url",
                "unknown key `url`",
            ),
        ];
        for (text, key, needle) in cases {
            let e = err(&text);
            assert_eq!(e.key, key, "for input:\n{text}\ngot: {e}");
            assert!(
                e.to_string().contains(needle),
                "for input:\n{text}\ngot: {e}"
            );
            assert!(e.to_string().starts_with("agent.toml: "), "{e}");
        }
    }

    /// A file that is not TOML names the line and column (1-based, in characters) and shows
    /// the line, like a compiler does.
    #[test]
    fn syntax_errors_name_the_line_and_column_and_show_the_line() {
        let head = "[container]\necs_container_name = \"game\"\n";
        let cases = [
            // (file, line, column, the line shown, what the message says)
            (
                format!("{head}[dns]\nttl = = 1\n"),
                4,
                7,
                "ttl = = 1",
                "extra",
            ),
            (
                format!("{head}docker_name = \"game\n[activity]\nports = [\"udp:1\"]\n"),
                3,
                20,
                "docker_name = \"game",
                "string",
            ),
            (
                format!("{head}ecs_container_name = \"other\"\n"),
                3,
                1,
                "ecs_container_name = \"other\"",
                "duplicate key `ecs_container_name`",
            ),
            (
                format!("{head}[activity]\nports = [\"udp:1\"]\n\n[container]\n"),
                6,
                2,
                "[container]",
                "duplicate key `container`",
            ),
            // Columns count characters, not bytes; a tab before the error is one column.
            (
                format!("{head}\tdocker_name = \"sp\u{ef}el\" = 1\n"),
                3,
                24,
                "\tdocker_name = \"sp\u{ef}el\" = 1",
                "",
            ),
            ("[container\n".to_string(), 1, 11, "[container", ""),
        ];
        for (text, line, column, shown, needle) in cases {
            let e = err(&text);
            let at =
                e.at.as_ref()
                    .unwrap_or_else(|| panic!("no position for:\n{text}\ngot: {e}"));
            assert_eq!(
                (at.line, at.column, at.text.as_str()),
                (line, column, shown),
                "for input:\n{text}\ngot: {e}"
            );
            assert_eq!(e.key, format!("line {line}, column {column}"), "{e}");
            assert!(
                e.message.starts_with("not valid TOML: ") && e.message.contains(needle),
                "for input:\n{text}\ngot: {e}"
            );
            // The line is shown, and the caret sits under the column (a tab stays a tab).
            let pad: String = shown
                .chars()
                .take(column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let gutter = " ".repeat(line.to_string().len());
            let expected = format!(
                "agent.toml: line {line}, column {column}: {}\n  {line} | {shown}\n  {gutter} | {pad}^",
                e.message
            );
            assert_eq!(e.to_string(), expected);
        }
    }

    #[test]
    fn a_stray_equals_sign_reads_like_a_compiler_error() {
        let e = err("[container]\necs_container_name = \"game\"\n[dns]\nttl = = 1\n");
        assert_eq!(
            e.to_string(),
            "agent.toml: line 4, column 7: not valid TOML: extra `=`, expected nothing\n  4 | ttl = = 1\n    |       ^"
        );
    }

    #[test]
    fn errors_after_parsing_have_no_position() {
        let e = err(&with(
            "",
            "",
            "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a.b\"\nttl = -5",
        ));
        assert_eq!(e.at, None);
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7m"), Ok(Duration::from_secs(420)));
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(28_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "10 s",
            "-1s",
            "1y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
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

        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,16}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(h in 0u64..1000, m in 0u64..60, s in 0u64..60) {
            let text = format!("{h}h{m}m{s}s");
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(h * 3600 + m * 60 + s)));
        }
    }

    #[test]
    fn notify_targets_parse_with_their_defaults() {
        let c = parse(
            "agent.toml",
            &with(
                "",
                "",
                "[alerts]\nsns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:a\"\n[notify]\nplayers_every = \"2m\"\n[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"/cm/discord\"\n[[notify.webhook]]\nkind = \"json\"\nurl_parameter = \"ha-hook\"\nevents = [\"players\", \"online\", \"players\"]",
            ),
        )
        .unwrap();
        use EventKind::*;
        assert_eq!(
            c.alerts.unwrap().events,
            vec![IdleStop, Crash, MaxUptime, NeedsOperator]
        );
        assert_eq!(c.notify.players_every, Duration::from_secs(120));
        let w = &c.notify.webhooks;
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].kind, WebhookKind::Discord);
        assert_eq!(w[0].url_parameter, "/cm/discord");
        assert_eq!(
            w[0].events,
            vec![Online, IdleStop, Crash, MaxUptime, NeedsOperator]
        );
        assert_eq!(w[1].kind, WebhookKind::Json);
        assert_eq!(w[1].events, vec![Players, Online], "duplicates folded");
        let none = parse("agent.toml", MINIMAL).unwrap();
        assert_eq!(none.notify, NotifyConfig::default());
    }

    #[test]
    fn a_url_in_place_of_the_parameter_name_is_refused_without_repeating_it() {
        let secret = "https://discord.com/api/webhooks/123/sEcReTtOkEn";
        let text = with(
            "",
            "",
            &format!("[[notify.webhook]]\nkind = \"discord\"\nurl_parameter = \"{secret}\""),
        );
        let e = err(&text);
        assert_eq!(e.key, "notify.webhook[0].url_parameter");
        let shown = e.to_string();
        assert!(shown.contains("SSM SecureString parameter"), "{shown}");
        assert!(!shown.contains("sEcReTtOkEn"), "{shown}");
        assert!(!shown.contains("discord.com"), "{shown}");
    }
}
