//! The Auto Scaling group: scale it to zero, complete the termination lifecycle action, and
//! keep that action alive with heartbeats during a slow save.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_autoscaling::Client;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use super::traits::{AwsError, Capacity};
use crate::decide::StopFacts;

const SERVICE: &str = "autoscaling";

/// The group tag that holds the wake budget's ledger: the end times (Unix seconds, separated by
/// spaces) of the last day's wakes nobody joined. The wake function reads it
/// (`cloud/container-manager.yaml`, `WakeFunction`).
pub const UNUSED_WAKES_TAG: &str = "container-manager:unused-wakes";
/// The group tag that holds the last stop the agent decided: "<Unix seconds> <reason> <text>",
/// read by the operator's `status` (`cloud/cm`).
pub const LAST_STOP_TAG: &str = "container-manager:last-stop";

/// The group tag that holds the last day's wakes for the operator's `status`: entries
/// "<end, Unix seconds>:<minutes up>:<1 if a player came, else 0>", oldest first.
pub const WAKES_TAG: &str = "container-manager:wakes";

/// The wakes tag's new value: the entries of `old` still within the day before `now` (what does
/// not parse is dropped), plus this one; the oldest go first when 256 characters do not hold
/// them all (13 entries always fit).
pub fn wakes_value(old: &str, now: u64, minutes: u64, joined: bool) -> String {
    let parse = |e: &str| -> Option<(u64, u64, bool)> {
        let mut f = e.split(':');
        let at = f.next()?.parse::<u64>().ok()?;
        let minutes = f.next()?.parse::<u64>().ok()?;
        let joined = match f.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        f.next().is_none().then_some((at, minutes, joined))
    };
    let mut kept: Vec<(u64, u64, bool)> = old
        .split_whitespace()
        .filter_map(parse)
        .filter(|(at, _, _)| *at <= now && now - at < LEDGER_WINDOW_SECS)
        .collect();
    kept.push((now, minutes, joined));
    kept.sort_unstable();
    let entries: Vec<String> = kept
        .iter()
        .map(|(at, m, j)| format!("{at}:{m}:{}", u8::from(*j)))
        .collect();
    let mut start = 0;
    while entries[start..].join(" ").len() > 256 {
        start += 1;
    }
    entries[start..].join(" ")
}

/// The group tag that holds when the game was last up for players (Unix seconds).
pub const ONLINE_TAG: &str = "container-manager:online";

/// The last-stop tag's value, within a tag value's 256 characters: "<Unix seconds> <reason>
/// players=<count or unknown> up=<minutes>m <text>" (cloud/cm reads it, and older values
/// without the two counts).
pub fn last_stop_value(at: u64, reason: &str, facts: StopFacts, detail: &str) -> String {
    let players = facts
        .players
        .map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let minutes = facts.up_for.as_secs() / 60;
    let value = format!("{at} {reason} players={players} up={minutes}m {detail}");
    value.chars().take(256).collect()
}

/// A day, in seconds: how far back the ledger counts.
pub const LEDGER_WINDOW_SECS: u64 = 86_400;
/// At most this many entries are kept (a tag value holds 256 characters; 20 entries of 10
/// digits and a space fit).
const LEDGER_MAX: usize = 20;

/// The ledger's entries still within the day before `now`, plus `add`: parsed leniently (what
/// is not a number is dropped), the newest kept.
pub fn ledger(value: &str, now: u64, add: Option<u64>) -> Vec<u64> {
    let mut kept: Vec<u64> = value
        .split_whitespace()
        .filter_map(|t| t.parse::<u64>().ok())
        .filter(|t| *t <= now && now - t < LEDGER_WINDOW_SECS)
        .chain(add)
        .collect();
    kept.sort_unstable();
    let skip = kept.len().saturating_sub(LEDGER_MAX);
    kept.drain(..skip);
    kept
}

/// Finds this instance's group once, lazily: from `scaling.auto_scaling_group` when set,
/// otherwise with `DescribeAutoScalingInstances`. A failed lookup is not cached, so the run
/// loop's retries retry it; a found group (or "not in any group") is.
#[derive(Debug)]
pub struct GroupResolver {
    client: Client,
    instance_id: String,
    configured: Option<String>,
    resolved: OnceCell<Option<String>>,
}

impl GroupResolver {
    pub fn new(client: Client, instance_id: String, configured: Option<String>) -> Self {
        Self {
            client,
            instance_id,
            configured,
            resolved: OnceCell::new(),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The group's name, or `None` when the instance is in no group.
    pub async fn group(&self) -> Result<Option<String>, AwsError> {
        self.resolved
            .get_or_try_init(|| async {
                if let Some(g) = &self.configured {
                    return Ok(Some(g.clone()));
                }
                let out = self
                    .client
                    .describe_auto_scaling_instances()
                    .instance_ids(&self.instance_id)
                    .send()
                    .await
                    .map_err(|e| call_error("DescribeAutoScalingInstances", &e))?;
                let group = out
                    .auto_scaling_instances()
                    .iter()
                    .find_map(|i| i.auto_scaling_group_name().map(str::to_string));
                match &group {
                    Some(g) => info!(group = %g, instance = %self.instance_id, "Found this instance's Auto Scaling group."),
                    None => warn!(instance = %self.instance_id, "This instance is in no Auto Scaling group."),
                }
                Ok(group)
            })
            .await
            .cloned()
    }

    /// The group's name; an error when the instance is in no group.
    pub async fn require(&self) -> Result<String, AwsError> {
        self.group().await?.ok_or_else(|| {
            AwsError::Invalid(format!(
                "instance {} is in no Auto Scaling group (set scaling.auto_scaling_group, or launch it from the group)",
                self.instance_id
            ))
        })
    }
}

/// The real [`Capacity`]: Auto Scaling calls for this instance's group.
#[derive(Debug, Clone)]
pub struct AutoScaling {
    client: Client,
    group: Arc<GroupResolver>,
    lifecycle_hook: Option<String>,
    launch_hook: Option<String>,
}

impl AutoScaling {
    pub fn new(client: Client, group: Arc<GroupResolver>, lifecycle_hook: Option<String>) -> Self {
        Self {
            client,
            group,
            lifecycle_hook,
            launch_hook: None,
        }
    }

    /// The launching hook of a group with a warm pool.
    #[must_use]
    pub fn with_launch_hook(mut self, hook: Option<String>) -> Self {
        self.launch_hook = hook;
        self
    }
}

#[async_trait]
impl Capacity for AutoScaling {
    async fn scale_to_zero(&self) -> Result<(), AwsError> {
        let group = self.group.require().await?;
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(&group)
            .desired_capacity(0)
            // The agent decided the server is idle; a cooldown from the scale-out must not
            // keep it running.
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| call_error("SetDesiredCapacity", &e))?;
        debug!(group = %group, "SetDesiredCapacity(0) accepted.");
        Ok(())
    }

    async fn complete_lifecycle(&self) -> Result<(), AwsError> {
        let Some(hook) = &self.lifecycle_hook else {
            debug!("No lifecycle hook configured; nothing to complete.");
            return Ok(());
        };
        self.complete(hook).await
    }

    async fn complete_launch(&self) -> Result<(), AwsError> {
        let Some(hook) = &self.launch_hook else {
            debug!("No launching hook configured; nothing to complete.");
            return Ok(());
        };
        self.complete(hook).await
    }

    async fn heartbeat(&self) -> Result<(), AwsError> {
        let Some(hook) = &self.lifecycle_hook else {
            return Ok(());
        };
        let group = self.group.require().await?;
        self.client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&group)
            .lifecycle_hook_name(hook)
            .instance_id(self.group.instance_id())
            .send()
            .await
            .map_err(|e| call_error("RecordLifecycleActionHeartbeat", &e))?;
        Ok(())
    }

    async fn record_unused_wake(&self, at: u64) -> Result<u32, AwsError> {
        let group = self.group.require().await?;
        let old = self
            .tag(&group, UNUSED_WAKES_TAG)
            .await?
            .unwrap_or_default();
        let kept = ledger(&old, at, Some(at));
        let value = kept
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        self.set_tag(&group, UNUSED_WAKES_TAG, value).await?;
        info!(group = %group, unused_wakes = kept.len(), "Recorded a wake nobody joined.");
        Ok(u32::try_from(kept.len()).unwrap_or(u32::MAX))
    }

    async fn record_stop(
        &self,
        at: u64,
        reason: &str,
        facts: StopFacts,
        detail: &str,
    ) -> Result<(), AwsError> {
        let group = self.group.require().await?;
        self.set_tag(
            &group,
            LAST_STOP_TAG,
            last_stop_value(at, reason, facts, detail),
        )
        .await
    }

    async fn record_online(&self, at: u64) -> Result<(), AwsError> {
        let group = self.group.require().await?;
        self.set_tag(&group, ONLINE_TAG, at.to_string()).await
    }

    async fn online_at(&self) -> Result<Option<u64>, AwsError> {
        let group = self.group.require().await?;
        Ok(self
            .tag(&group, ONLINE_TAG)
            .await?
            .and_then(|v| v.trim().parse().ok()))
    }

    async fn record_wake_outcome(
        &self,
        at: u64,
        minutes: u64,
        joined: bool,
    ) -> Result<(), AwsError> {
        let group = self.group.require().await?;
        let old = self.tag(&group, WAKES_TAG).await?.unwrap_or_default();
        self.set_tag(&group, WAKES_TAG, wakes_value(&old, at, minutes, joined))
            .await
    }

    async fn clear_unused_wakes(&self) -> Result<(), AwsError> {
        let group = self.group.require().await?;
        self.set_tag(&group, UNUSED_WAKES_TAG, String::new())
            .await?;
        debug!(group = %group, "A player came: the wake budget starts again.");
        Ok(())
    }
}

impl AutoScaling {
    /// The value of one of the group's tags, `None` when it has none.
    async fn tag(&self, group: &str, key: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| call_error("DescribeAutoScalingGroups", &e))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.tags())
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string))
    }

    async fn set_tag(&self, group: &str, key: &str, value: String) -> Result<(), AwsError> {
        let tag = aws_sdk_autoscaling::types::Tag::builder()
            .resource_id(group)
            .resource_type("auto-scaling-group")
            .key(key)
            .value(value)
            .propagate_at_launch(false)
            .build();
        self.client
            .create_or_update_tags()
            .tags(tag)
            .send()
            .await
            .map_err(|e| call_error("CreateOrUpdateTags", &e))?;
        Ok(())
    }

    async fn complete(&self, hook: &str) -> Result<(), AwsError> {
        let group = self.group.require().await?;
        self.client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&group)
            .lifecycle_hook_name(hook)
            .instance_id(self.group.instance_id())
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .map_err(|e| call_error("CompleteLifecycleAction", &e))?;
        Ok(())
    }
}

fn call_error<E>(call: &'static str, e: &E) -> AwsError
where
    E: std::error::Error + aws_sdk_sns::error::ProvideErrorMetadata + 'static,
{
    super::traits::call_error(SERVICE, call, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_last_stop_fits_a_tag_value() {
        let facts = StopFacts {
            players: Some(0),
            up_for: Duration::from_secs(47 * 60 + 59),
        };
        assert_eq!(
            last_stop_value(7, "idle", facts, "no players for 7m"),
            "7 idle players=0 up=47m no players for 7m"
        );
        let unknown = StopFacts {
            players: None,
            up_for: Duration::ZERO,
        };
        assert_eq!(
            last_stop_value(7, "crash", unknown, "the game crashed"),
            "7 crash players=unknown up=0m the game crashed"
        );
        let long = last_stop_value(7, "never_started", unknown, &"é".repeat(400));
        assert_eq!(long.chars().count(), 256);
    }

    #[test]
    fn the_ledger_keeps_the_last_day_newest_first_out_and_drops_what_is_not_a_time() {
        let now = 1_000_000;
        let old = format!(
            "{} {} junk {} {}",
            now - 90_000,
            now - 86_400,
            now - 3_600,
            now + 5
        );
        assert_eq!(ledger(&old, now, None), vec![now - 3_600]);
        assert_eq!(ledger("", now, Some(now)), vec![now]);
        let full: String = (0..30).map(|i| format!("{} ", now - 100 + i)).collect();
        let kept = ledger(&full, now, Some(now));
        assert_eq!(kept.len(), LEDGER_MAX);
        assert_eq!(kept.last(), Some(&now));
        let value = kept
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            value.len() <= 256,
            "a tag value holds 256 characters: {}",
            value.len()
        );
    }

    #[test]
    fn the_wakes_tag_keeps_the_last_day_oldest_out_first_within_256_characters() {
        let now = 2_000_000_000;
        let old = format!(
            "{}:30:1 {}:9:0 junk 5:x:1 {}:12:1 {}:3:2 {}:1:0",
            now - 90_000,
            now - 86_400,
            now - 3_600,
            now - 60,
            now + 5
        );
        assert_eq!(
            wakes_value(&old, now, 8, false),
            format!("{}:12:1 {now}:8:0", now - 3_600)
        );
        assert_eq!(wakes_value("", now, 0, true), format!("{now}:0:1"));
        let mut value = String::new();
        for i in 0..40 {
            value = wakes_value(&value, now - 4_000 + i * 100, 99_999, i % 2 == 0);
        }
        assert!(value.len() <= 256, "{}", value.len());
        let kept: Vec<&str> = value.split(' ').collect();
        assert_eq!(kept.len(), 13, "{value}");
        assert_eq!(kept.last(), Some(&"1999999900:99999:0"));
    }
}
