//! The text of every notification, built in one place: one [`Message`] per event, rendered
//! for SNS (e-mail, SMS), Discord, Slack and plain JSON within each service's limits.
//!
//! Messages are short and human: the server's name, what happened, why, and what to do next.

use std::time::Duration;

use serde_json::{Value, json};

use crate::decide::{Alert, EventKind, Problem, StartFailure};

/// Who the messages are about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The server's name: the DNS record, or the container's name without DNS.
    pub server: String,
    /// The addresses players connect to (the instance's public IPv4, and IPv6 if any).
    pub addresses: Vec<String>,
}

/// How a message looks at a glance (a Discord embed's colour, an emoji in Slack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Info,
    Warning,
    Bad,
}

/// One notification, before it is written for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: EventKind,
    pub tone: Tone,
    pub server: String,
    /// One line: `valheim.example.com is up`.
    pub title: String,
    /// What happened and why, in a sentence or two.
    pub text: String,
    /// What a player or the operator can do next, if anything.
    pub next: Option<String>,
    /// Short facts: (name, value).
    pub fields: Vec<(String, String)>,
    /// The game's last log lines (crashes only).
    pub log_tail: Vec<String>,
    /// The facts as machine-readable values, for the `json` kind.
    pub data: Value,
}

/// Whole seconds, written as people read them: `4m 12s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Whole minutes for long spans (`2h 5m`), seconds below one minute.
fn human_minutes(d: Duration) -> String {
    if d.as_secs() < 60 {
        return human(d);
    }
    human(Duration::from_secs(d.as_secs() / 60 * 60))
}

impl Message {
    /// The message for one event.
    pub fn new(alert: &Alert, cx: &Context) -> Self {
        let server = cx.server.clone();
        let address = (!cx.addresses.is_empty()).then(|| cx.addresses.join(", "));
        let mut m = Message {
            kind: alert.kind(),
            tone: Tone::Info,
            server: server.clone(),
            title: String::new(),
            text: String::new(),
            next: None,
            fields: Vec::new(),
            log_tail: Vec::new(),
            data: json!({}),
        };
        match alert {
            Alert::Online { uptime } => {
                m.tone = Tone::Good;
                m.title = format!("{server} is up");
                m.text = format!(
                    "The game server {server} is ready for players. It took {} from the instance's start.",
                    human(*uptime)
                );
                m.next = Some(format!("Connect to {server}."));
                m.fields.push(("Server".into(), server.clone()));
                if let Some(a) = &address {
                    m.fields.push(("Address".into(), a.clone()));
                }
                m.fields.push(("Start-up".into(), human(*uptime)));
                m.data = json!({
                    "addresses": cx.addresses,
                    "wake_seconds": uptime.as_secs_f64(),
                });
            }
            Alert::Players { online, max } => {
                m.title = match online {
                    0 => format!("{server}: nobody is playing"),
                    1 => format!("{server}: 1 player online"),
                    n => format!("{server}: {n} players online"),
                };
                m.text = if *max > 0 {
                    format!("{online} of {max} player slots are taken on {server}.")
                } else {
                    format!("{online} players are on {server}.")
                };
                if *online == 0 {
                    m.next = Some(
                        "The server stops by itself if nobody joins for a while; the world is saved first."
                            .into(),
                    );
                }
                m.fields.push(("Players".into(), players(*online, *max)));
                m.data = json!({ "players": online, "max_players": max });
            }
            Alert::IdleStop {
                idle_for,
                uptime,
                saved,
                unused,
            } => {
                m.title = if *unused {
                    format!("{server} stopped: nobody came")
                } else {
                    format!("{server} stopped: nobody was playing")
                };
                let save = match saved {
                    Some(true) => "The world was saved before the server stopped.",
                    Some(false) => {
                        m.tone = Tone::Warning;
                        "The game did not stop cleanly in time, so the latest progress may not be saved."
                    }
                    None => "No game was running, so there was nothing to save.",
                };
                m.text = if *unused {
                    format!(
                        "{server} was woken up, but nobody joined in the {} it was ready, so it was shut down to save money. {save}",
                        human_minutes(*idle_for)
                    )
                } else {
                    format!(
                        "Nobody played on {server} for {}, so it was shut down to save money. {save}",
                        human_minutes(*idle_for)
                    )
                };
                m.next = Some(format!(
                    "Look up {server} again (open the game's server list, or connect) to start it."
                ));
                m.fields.push(("Up for".into(), human_minutes(*uptime)));
                m.fields.push(("Idle for".into(), human_minutes(*idle_for)));
                m.fields.push((
                    "World saved".into(),
                    match saved {
                        Some(true) => "yes",
                        Some(false) => "not confirmed",
                        None => "no game was running",
                    }
                    .into(),
                ));
                m.data = json!({
                    "idle_seconds": idle_for.as_secs(),
                    "uptime_seconds": uptime.as_secs(),
                    "saved": saved,
                    "nobody_came": unused,
                });
            }
            Alert::IdleNoScaling { idle_for, detail } => {
                m.tone = Tone::Warning;
                m.title = format!("{server}: idle, still running");
                m.text = format!(
                    "Nobody has played on {server} for {} ({detail}).",
                    human_minutes(*idle_for)
                );
                m.next = Some(
                    "Add [scaling] to the agent's config to let it stop the server, or stop it by hand."
                        .into(),
                );
                m.fields.push(("Idle for".into(), human_minutes(*idle_for)));
                m.data = json!({ "idle_seconds": idle_for.as_secs(), "scaling": false });
            }
            Alert::Crash {
                exit_code,
                oom_killed,
                crashes,
                container,
                log_tail,
                scaling_in,
            } => {
                m.tone = Tone::Bad;
                m.title = format!("{server}: game crashed (exit {exit_code})");
                let what = if *oom_killed {
                    format!("was killed for lack of memory (exit code {exit_code})")
                } else {
                    format!("crashed with exit code {exit_code}")
                };
                m.text = format!("The game server {server} {what}.");
                if *crashes > 1 {
                    m.text
                        .push_str(&format!(" That is {crashes} crashes in a row."));
                }
                m.text.push_str(if *scaling_in {
                    " The instance is shutting down to save money."
                } else {
                    " The instance keeps running."
                });
                m.next = Some(if *scaling_in {
                    format!(
                        "Look up {server} again to start it. If it keeps crashing, the operator should read the game's log."
                    )
                } else {
                    "The operator should read the game's log.".into()
                });
                m.exit_fields(
                    *exit_code,
                    *crashes,
                    "Crashes in a row",
                    container,
                    log_tail,
                );
                m.data = json!({
                    "exit_code": exit_code,
                    "oom_killed": oom_killed,
                    "crashes": crashes,
                    "container": container,
                    "scaling_in": scaling_in,
                    "log_tail": log_tail,
                });
            }
            Alert::MaxUptime {
                uptime,
                scaling_in,
                unconfirmed_for,
            } => {
                m.tone = Tone::Warning;
                m.title = format!("{server}: up for {}", human_minutes(*uptime));
                match (scaling_in, unconfirmed_for) {
                    (true, Some(quiet)) => {
                        m.text = format!(
                            "{server} has been running for {}, longer than its max_uptime, and no player has been seen for {}, so it is shutting down now. The world is saved first.",
                            human_minutes(*uptime),
                            human_minutes(*quiet)
                        );
                        m.next = Some(format!(
                            "Look up {server} again to start it. The operator should check why the player count or the traffic could not be measured."
                        ));
                    }
                    (true, None) => {
                        m.text = format!(
                            "{server} has been running for {}, its maximum, so it is shutting down now. The world is saved first.",
                            human_minutes(*uptime)
                        );
                        m.next = Some(format!("Look up {server} again to start it."));
                    }
                    (false, _) => {
                        m.text = format!(
                            "{server} has been running for {}, longer than its max_uptime. It keeps running while someone plays.",
                            human_minutes(*uptime)
                        );
                        m.next = Some(
                            "The operator should check whether someone is playing or the server is stuck."
                                .into(),
                        );
                    }
                }
                m.fields.push(("Up for".into(), human_minutes(*uptime)));
                m.data = json!({
                    "uptime_seconds": uptime.as_secs(),
                    "scaling_in": scaling_in,
                    "unconfirmed_seconds": unconfirmed_for.map(|d| d.as_secs()),
                });
            }
            Alert::NeverStarted {
                failure,
                scaling_in,
            } => {
                m.tone = Tone::Bad;
                m.title = format!("{server}: the game never started");
                m.text = format!("The game server {server} did not start: {failure}.");
                m.text.push_str(if *scaling_in {
                    " The address goes back to sleeping and the instance shuts down."
                } else {
                    " The instance keeps running."
                });
                m.next = Some(match failure {
                    StartFailure::NoContainer { .. } => {
                        "The operator should check the stack's ContainerImage (its name, tag and registry) and the ECS agent's log on the instance; a lookup wakes it again."
                            .to_string()
                    }
                    StartFailure::Exited { .. } => {
                        "The operator should read the game's log below (its settings, secrets and data); a lookup wakes it again."
                            .to_string()
                    }
                });
                match failure {
                    StartFailure::NoContainer { waited, why } => {
                        m.fields.push(("Waited".into(), human_minutes(*waited)));
                        m.fields.push(("Reason".into(), why.clone()));
                        m.data = json!({
                            "reason": "no_container",
                            "waited_seconds": waited.as_secs(),
                            "why": why,
                            "scaling_in": scaling_in,
                        });
                    }
                    StartFailure::Exited {
                        exit_code,
                        oom_killed,
                        crashes,
                        container,
                        log_tail,
                    } => {
                        m.exit_fields(*exit_code, *crashes, "Exits in a row", container, log_tail);
                        m.data = json!({
                            "reason": "exited",
                            "exit_code": exit_code,
                            "oom_killed": oom_killed,
                            "crashes": crashes,
                            "container": container,
                            "scaling_in": scaling_in,
                            "log_tail": log_tail,
                        });
                    }
                }
            }
            Alert::NeedsOperator(problem) => {
                m.tone = Tone::Bad;
                let (title, text, next, error) = operator_text(problem);
                m.title = format!("{server}: {title}");
                m.text = text;
                m.next = Some(next);
                if let Some(e) = error {
                    m.fields.push(("Error".into(), e.to_string()));
                }
                m.data = json!({ "problem": problem.name(), "error": error });
            }
        }
        m
    }

    /// A container's exit, for `crash` and `never_started`: its code, how many in a row (under
    /// `in_a_row`, when more than one), the container, and its last log lines.
    fn exit_fields(
        &mut self,
        exit_code: i64,
        times: u32,
        in_a_row: &str,
        container: &str,
        log_tail: &[String],
    ) {
        self.fields
            .push(("Exit code".into(), exit_code.to_string()));
        if times > 1 {
            self.fields.push((in_a_row.into(), times.to_string()));
        }
        self.fields
            .push(("Container".into(), container.to_string()));
        self.log_tail = log_tail.to_vec();
    }

    /// SNS: a subject of at most 100 characters and a plain-text body.
    pub fn sns(&self) -> (String, String) {
        let mut body = format!("{}\n", self.text);
        if let Some(n) = &self.next {
            body.push_str(n);
            body.push('\n');
        }
        if !self.fields.is_empty() {
            body.push('\n');
            for (k, v) in &self.fields {
                body.push_str(&format!("{k}: {v}\n"));
            }
        }
        if !self.log_tail.is_empty() {
            body.push_str(&format!("\nLast {} log lines:\n", self.log_tail.len()));
            for l in &self.log_tail {
                body.push_str(l);
                body.push('\n');
            }
        }
        (clip(&self.title, 100), body)
    }

    /// Discord's execute-webhook body: one embed, within Discord's limits (title 256,
    /// description 4096, 25 fields of 256/1024, 6000 in all), mentions off.
    pub fn discord(&self) -> Value {
        let mut description = self.text.clone();
        if let Some(n) = &self.next {
            description.push_str("\n\n");
            description.push_str(n);
        }
        let description = clip(&description, 2000);
        let mut fields: Vec<Value> = self
            .fields
            .iter()
            .take(10)
            .map(|(k, v)| json!({ "name": clip(k, 64), "value": clip(v, 256), "inline": true }))
            .collect();
        if !self.log_tail.is_empty() {
            fields.push(json!({
                "name": "Last log lines",
                "value": code_block(&self.log_tail, 1000),
                "inline": false,
            }));
        }
        json!({
            "username": "container-manager",
            "allowed_mentions": { "parse": [] },
            "embeds": [{
                "title": clip(&self.title, 256),
                "description": description,
                "color": match self.tone {
                    Tone::Good => 0x2e_cc71,
                    Tone::Info => 0x34_98db,
                    Tone::Warning => 0xf1_c40f,
                    Tone::Bad => 0xe7_4c3c,
                },
                "fields": fields,
                "footer": { "text": format!("container-manager · {}", self.kind.as_str()) },
            }],
        })
    }

    /// Slack's incoming-webhook body: a plain `text` (the notification's preview) and blocks
    /// within Slack's limits (header 150, section text 3000, 10 fields of 2000).
    pub fn slack(&self) -> Value {
        let icon = match self.tone {
            Tone::Good => ":large_green_circle:",
            Tone::Info => ":information_source:",
            Tone::Warning => ":warning:",
            Tone::Bad => ":red_circle:",
        };
        let mut text = slack_escape(&self.text);
        if let Some(n) = &self.next {
            text.push('\n');
            text.push_str(&slack_escape(n));
        }
        let mut blocks = vec![
            json!({ "type": "header", "text": { "type": "plain_text", "text": clip(&self.title, 150), "emoji": true } }),
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&format!("{icon} {text}"), 3000) } }),
        ];
        if !self.fields.is_empty() {
            let fields: Vec<Value> = self
                .fields
                .iter()
                .take(10)
                .map(|(k, v)| {
                    json!({ "type": "mrkdwn", "text": clip(&format!("*{}*\n{}", slack_escape(k), slack_escape(v)), 2000) })
                })
                .collect();
            blocks.push(json!({ "type": "section", "fields": fields }));
        }
        if !self.log_tail.is_empty() {
            let lines: Vec<String> = self.log_tail.iter().map(|l| slack_escape(l)).collect();
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": code_block(&lines, 2900) } }));
        }
        json!({
            "text": clip(&format!("{}: {}", self.title, self.text), 3000),
            "blocks": blocks,
        })
    }

    /// The `json` kind: one flat object for any receiver (ntfy, Home Assistant, scripts).
    pub fn json(&self) -> Value {
        json!({
            "source": "container-manager",
            "event": self.kind.as_str(),
            "server": self.server,
            "title": self.title,
            "message": self.text,
            "next": self.next,
            "data": self.data,
        })
    }
}

fn players(online: u32, max: u32) -> String {
    if max > 0 {
        format!("{online}/{max}")
    } else {
        online.to_string()
    }
}

/// Title, text, what to do, and the error, for a problem only an operator can fix.
fn operator_text(problem: &Problem) -> (&'static str, String, String, Option<&str>) {
    let (title, text, next, error): (&str, String, &str, Option<&str>) = match problem {
        Problem::Refused { what, fix, error } => {
            return (
                "AWS refuses a call",
                format!(
                    "The agent cannot {what}: AWS refused the call, and retrying will not change that. {}",
                    refused_consequence(what)
                ),
                fix.clone(),
                Some(error),
            );
        }
        Problem::MetricsStuck { failures, error } => {
            return (
                "metrics failing",
                format!(
                    "The agent could not publish its metrics {failures} times in a row. The heartbeat alarm reads them: if this goes on for about 10 minutes, it takes the agent for dead and scales the server to zero (the world is saved first, and anyone playing is disconnected)."
                ),
                "Check the instance's route to CloudWatch (monitoring.<region>.amazonaws.com) and the role's cloudwatch:PutMetricData permission; to keep the server up meanwhile, disable the alarm's actions: aws cloudwatch disable-alarm-actions --alarm-names container-manager-<server>-agent-heartbeat-missing".into(),
                Some(error),
            );
        }
        Problem::RevertStuck { error } => (
            "DNS cannot be set back",
            "The agent cannot set the server's DNS record back to the placeholder while the server stops, so the name may point at a stopped instance: a lookup then finds nothing until the record is fixed. It keeps retrying.".into(),
            "Check the instance role's route53:ChangeResourceRecordSets permission and the hosted zone id.",
            Some(error.as_str()),
        ),
        Problem::NoMetadata => (
            "agent cannot read instance metadata",
            "The agent could not read the instance's metadata at boot, so it does not update DNS and never scales in: the instance keeps running and costs money.".into(),
            "Check the instance's metadata options (IMDSv2, hop limit), then run: systemctl restart container-manager-agent",
            None,
        ),
        Problem::NoPacketCounter { error } => (
            "agent cannot count packets",
            "The agent cannot count the game's packets, so every sample counts as activity and the server never stops by itself.".into(),
            "Check the agent's journal (journalctl -u container-manager-agent) and its CAP_NET_RAW capability.",
            Some(error),
        ),
        Problem::NoDocker { error } => (
            "agent cannot reach Docker",
            "The agent cannot reach Docker, so it neither sees crashes nor saves the game before a shutdown.".into(),
            "Check that Docker runs and that the agent's user is in the docker group.",
            Some(error),
        ),
        Problem::LifecycleStuck { error } => (
            "shutdown step failing",
            "The agent cannot complete the instance's termination lifecycle action. It keeps retrying; if it never succeeds, the instance terminates when the hook times out.".into(),
            "Check the instance role's autoscaling:CompleteLifecycleAction permission.",
            Some(error),
        ),
        Problem::DnsStuck { error } => (
            "DNS update failing",
            "The agent cannot point the server's DNS record at this instance, so players cannot find it. It keeps retrying.".into(),
            "Check the instance role's route53:ChangeResourceRecordSets permission and the hosted zone id.",
            Some(error),
        ),
        Problem::WakeBudgetSpent { wakes, budget } => (
            "lookups no longer wake the server",
            format!(
                "{wakes} wakes in the last day had nobody join (the budget is {budget}): something looks the name up without playing, a bot or a link preview. Lookups do not wake the server until the oldest of them is a day old."
            ),
            "To wake it anyway: aws autoscaling set-desired-capacity --auto-scaling-group-name container-manager-<server> --desired-capacity 1. A wake someone joins starts the count again.",
            None,
        ),
        Problem::ScaleInStuck { error } => (
            "cannot scale to zero",
            "The agent decided to stop the server but cannot set the Auto Scaling group's capacity to 0, so the instance keeps running. It keeps retrying.".into(),
            "Check the instance role's autoscaling:SetDesiredCapacity permission, or set the capacity to 0 by hand.",
            Some(error),
        ),
    };
    (title, text, next.to_string(), error)
}

/// What a refused call means for the server, by what the agent was doing.
fn refused_consequence(what: &str) -> &'static str {
    if what.contains("desired capacity") {
        "The server keeps running (and costing money) until the capacity is set to 0."
    } else if what.contains("point the record") {
        "Players cannot find the server by its name."
    } else if what.contains("placeholder") {
        "The name may keep pointing at the stopped instance."
    } else if what.contains("lifecycle") || what.contains("launching hook") {
        "The instance waits for the hook's timeout at each start or stop."
    } else if what.contains("metrics") {
        "The dashboard stays empty, and the heartbeat alarm sees no agent."
    } else {
        "The operator's status and the wake budget miss this note."
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The last lines that fit in `max` characters, in a code block that they cannot close.
fn code_block(lines: &[String], max: usize) -> String {
    let budget = max.saturating_sub(8);
    let mut kept: Vec<String> = Vec::new();
    let mut used = 0;
    for l in lines.iter().rev() {
        let l = clip(&l.replace("```", "'''"), 200);
        let n = l.chars().count() + 1;
        if used + n > budget {
            break;
        }
        used += n;
        kept.push(l);
    }
    kept.reverse();
    format!("```\n{}\n```", kept.join("\n"))
}

/// Slack's mrkdwn control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            server: "valheim.example.com".into(),
            addresses: vec!["203.0.113.7".into()],
        }
    }

    fn every_alert() -> Vec<Alert> {
        let long_tail: Vec<String> = (0..1000)
            .map(|i| format!("line {i} ``` @everyone <!channel> {}", "x".repeat(300)))
            .collect();
        vec![
            Alert::Online {
                uptime: Duration::from_secs(47),
            },
            Alert::Players { online: 3, max: 10 },
            Alert::Players { online: 0, max: 10 },
            Alert::IdleStop {
                idle_for: Duration::from_secs(420),
                uptime: Duration::from_secs(7260),
                saved: Some(true),
                unused: false,
            },
            Alert::IdleStop {
                idle_for: Duration::from_secs(420),
                uptime: Duration::from_secs(7260),
                saved: Some(false),
                unused: false,
            },
            Alert::IdleNoScaling {
                idle_for: Duration::from_secs(420),
                detail: "the game reports 0 players".into(),
            },
            Alert::Crash {
                exit_code: 3,
                oom_killed: false,
                crashes: 2,
                container: "game".into(),
                log_tail: long_tail,
                scaling_in: true,
            },
            Alert::MaxUptime {
                uptime: Duration::from_secs(8 * 3600),
                scaling_in: false,
                unconfirmed_for: None,
            },
            Alert::NeedsOperator(Problem::NoMetadata),
            Alert::NeedsOperator(Problem::LifecycleStuck {
                error: "e".repeat(5000),
            }),
            Alert::NeverStarted {
                failure: StartFailure::NoContainer {
                    waited: Duration::from_secs(610),
                    why: format!(
                        "the image 127.0.0.1:5999/game:1 cannot be pulled: {}",
                        "connection refused ".repeat(300)
                    ),
                },
                scaling_in: true,
            },
            Alert::NeverStarted {
                failure: StartFailure::Exited {
                    exit_code: 1,
                    oom_killed: false,
                    crashes: 1,
                    container: "ecs-game-1".into(),
                    log_tail: vec!["json.decoder.JSONDecodeError: Expecting property name".into()],
                },
                scaling_in: true,
            },
            Alert::IdleStop {
                idle_for: Duration::from_secs(300),
                uptime: Duration::from_secs(420),
                saved: Some(true),
                unused: true,
            },
            Alert::NeedsOperator(Problem::WakeBudgetSpent {
                wakes: 3,
                budget: 3,
            }),
            Alert::MaxUptime {
                uptime: Duration::from_secs(9 * 3600),
                scaling_in: true,
                unconfirmed_for: Some(Duration::from_secs(600)),
            },
        ]
    }

    #[test]
    fn the_backstop_says_nobody_was_seen_and_that_the_world_is_saved() {
        let all = every_alert();
        let m = Message::new(all.last().expect("every_alert is not empty"), &cx());
        assert_eq!(m.kind, EventKind::MaxUptime);
        assert!(
            m.text.contains("no player has been seen for 10m")
                && m.text.contains("shutting down now")
                && m.text.contains("world is saved first"),
            "{}",
            m.text
        );
        assert!(
            m.next
                .as_deref()
                .is_some_and(|n| n.contains("could not be measured")),
            "{:?}",
            m.next
        );
        assert_eq!(m.data["unconfirmed_seconds"], 600);
    }

    #[test]
    fn an_unused_wake_says_nobody_came() {
        let m = Message::new(&every_alert()[12], &cx());
        assert_eq!(m.kind, EventKind::IdleStop);
        assert_eq!(m.title, "valheim.example.com stopped: nobody came");
        assert!(
            m.text.contains("nobody joined in the 5m it was ready"),
            "{}",
            m.text
        );
        assert_eq!(m.json()["data"]["nobody_came"], true);
        let spent = Message::new(&every_alert()[13], &cx());
        assert_eq!(
            spent.title,
            "valheim.example.com: lookups no longer wake the server"
        );
        assert!(
            spent
                .text
                .contains("3 wakes in the last day had nobody join"),
            "{}",
            spent.text
        );
        assert!(
            spent
                .next
                .as_deref()
                .is_some_and(|n| n.contains("set-desired-capacity"))
        );
    }

    #[test]
    fn never_started_says_why_and_that_the_server_goes_back_to_sleep() {
        let all = every_alert();
        let pulled = Message::new(&all[10], &cx());
        assert_eq!(pulled.kind, EventKind::NeverStarted);
        assert_eq!(pulled.title, "valheim.example.com: the game never started");
        assert!(
            pulled
                .text
                .contains("no container of the game ran within 10m")
                && pulled.text.contains("cannot be pulled")
                && pulled.text.contains("goes back to sleeping"),
            "{}",
            pulled.text
        );
        assert!(
            pulled
                .next
                .as_deref()
                .is_some_and(|n| n.contains("ContainerImage"))
        );
        let (subject, body) = pulled.sns();
        assert!(
            subject.contains("never started") && body.contains("Reason: the image"),
            "{body}"
        );
        assert_eq!(pulled.json()["data"]["reason"], "no_container");
        let exited = Message::new(&all[11], &cx());
        assert!(
            exited
                .text
                .contains("exited with code 1 before the game was up"),
            "{}",
            exited.text
        );
        let (_, body) = exited.sns();
        assert!(
            body.contains("JSONDecodeError") && body.contains("Exit code: 1"),
            "{body}"
        );
        assert_eq!(exited.json()["data"]["exit_code"], 1);
    }

    fn chars(v: &Value) -> usize {
        v.as_str().map_or(0, |s| s.chars().count())
    }

    #[test]
    fn discord_bodies_fit_discords_limits_and_mention_nobody() {
        for alert in every_alert() {
            let body = Message::new(&alert, &cx()).discord();
            assert_eq!(body["allowed_mentions"]["parse"], json!([]));
            let e = &body["embeds"][0];
            let fields = e["fields"].as_array().unwrap();
            assert!(chars(&e["title"]) <= 256 && chars(&e["title"]) > 0);
            assert!(chars(&e["description"]) <= 4096);
            assert!(fields.len() <= 25);
            let mut total =
                chars(&e["title"]) + chars(&e["description"]) + chars(&e["footer"]["text"]);
            for f in fields {
                assert!(
                    chars(&f["name"]) <= 256 && chars(&f["value"]) <= 1024,
                    "{f}"
                );
                total += chars(&f["name"]) + chars(&f["value"]);
            }
            assert!(total <= 6000, "{alert:?}: {total}");
        }
    }

    #[test]
    fn slack_bodies_fit_slacks_limits() {
        for alert in every_alert() {
            let body = Message::new(&alert, &cx()).slack();
            assert!(chars(&body["text"]) > 0 && chars(&body["text"]) <= 3000);
            let blocks = body["blocks"].as_array().unwrap();
            assert!(blocks.len() <= 50);
            assert_eq!(blocks[0]["type"], "header");
            assert!(chars(&blocks[0]["text"]["text"]) <= 150);
            for b in &blocks[1..] {
                assert!(chars(&b["text"]["text"]) <= 3000, "{b}");
                for f in b["fields"].as_array().into_iter().flatten() {
                    assert!(chars(&f["text"]) <= 2000);
                }
            }
            // Slack's control sequences cannot be injected through a log line.
            assert!(!body.to_string().contains("<!channel>"));
        }
    }

    #[test]
    fn a_crash_log_tail_keeps_the_last_lines_in_a_block_they_cannot_close() {
        let m = Message::new(&every_alert()[6], &cx());
        let d = m.discord();
        let tail = d["embeds"][0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "Last log lines")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(tail.starts_with("```\n") && tail.ends_with("\n```"));
        assert_eq!(tail.matches("```").count(), 2, "{tail}");
        assert!(tail.contains("line 999 "), "the newest line is kept");
        assert!(!tail.contains("line 0 "));
    }

    #[test]
    fn each_event_says_what_happened_and_what_to_do() {
        let texts: Vec<(EventKind, String, String)> = every_alert()
            .iter()
            .map(|a| {
                let m = Message::new(a, &cx());
                (
                    m.kind,
                    m.title.clone(),
                    format!("{} {}", m.text, m.next.unwrap_or_default()),
                )
            })
            .collect();
        let (k, title, text) = &texts[0];
        assert_eq!(*k, EventKind::Online);
        assert_eq!(title, "valheim.example.com is up");
        assert!(text.contains("47s"), "{text}");
        assert!(texts[1].1.contains("3 players online"));
        let (_, title, text) = &texts[3];
        assert!(title.contains("stopped"), "{title}");
        assert!(
            text.contains("7m") && text.contains("world was saved"),
            "{text}"
        );
        assert!(text.contains("Look up valheim.example.com again"), "{text}");
        assert!(texts[4].2.contains("may not be saved"));
        assert_eq!(texts[6].1, "valheim.example.com: game crashed (exit 3)");
        assert!(texts[6].2.contains("2 crashes in a row"));
        assert!(
            texts[8]
                .2
                .contains("systemctl restart container-manager-agent")
        );
        let online = Message::new(&every_alert()[0], &cx()).json();
        assert_eq!(online["event"], "online");
        assert_eq!(online["data"]["addresses"], json!(["203.0.113.7"]));
        assert_eq!(online["data"]["wake_seconds"], json!(47.0));
        let stop = Message::new(&every_alert()[3], &cx()).json();
        assert_eq!(
            stop["data"],
            json!({"idle_seconds": 420, "uptime_seconds": 7260, "saved": true, "nobody_came": false})
        );
    }

    #[test]
    fn sns_subjects_stay_within_100_characters() {
        let long = Context {
            server: "x".repeat(200),
            addresses: vec![],
        };
        for alert in every_alert() {
            let (subject, body) = Message::new(&alert, &long).sns();
            assert!(subject.chars().count() <= 100);
            assert!(!body.is_empty());
        }
    }
}
