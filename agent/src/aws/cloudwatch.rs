//! CloudWatch custom metrics: one PutMetricData per interval.
//!
//! The dimension is `AutoScalingGroupName` with the instance's group, so the metrics (and the
//! alarms on them) outlive each instance of the group. An instance in no group publishes
//! with the dimension `InstanceId` instead.
//!
//! | Metric           | Unit    | Value                                                  |
//! |------------------|---------|--------------------------------------------------------|
//! | InboundPackets   | Count   | game packets in the interval; left out when uncounted  |
//! | PlayersOnline    | Count   | the last probed player count; left out without a probe |
//! | IdleSeconds      | Seconds | how long the server has been idle                      |
//! | ContainerRunning | Count   | 1 while the game container runs, else 0                |
//! | AgentHeartbeat   | Count   | always 1: an alarm on missing data finds a dead agent  |

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use super::autoscaling::GroupResolver;
use super::traits::{AwsError, Metrics, call_error};
use crate::decide::MetricsBatch;

const SERVICE: &str = "cloudwatch";

#[derive(Debug, Clone)]
pub struct CloudWatch {
    client: Client,
    namespace: String,
    group: Arc<GroupResolver>,
}

impl CloudWatch {
    pub fn new(client: Client, namespace: String, group: Arc<GroupResolver>) -> Self {
        Self {
            client,
            namespace,
            group,
        }
    }
}

/// The data points of one batch, in a fixed order.
pub fn data(batch: &MetricsBatch) -> Vec<(&'static str, StandardUnit, f64)> {
    let mut out = Vec::with_capacity(5);
    if let Some(p) = batch.inbound_packets {
        // f64 holds every count below 2^53 exactly; a game never gets near that per interval.
        #[allow(clippy::cast_precision_loss)]
        out.push(("InboundPackets", StandardUnit::Count, p as f64));
    }
    if let Some(p) = batch.players_online {
        out.push(("PlayersOnline", StandardUnit::Count, f64::from(p)));
    }
    out.push(("IdleSeconds", StandardUnit::Seconds, batch.idle_seconds));
    out.push((
        "ContainerRunning",
        StandardUnit::Count,
        if batch.container_running { 1.0 } else { 0.0 },
    ));
    out.push(("AgentHeartbeat", StandardUnit::Count, 1.0));
    // Once per wake, at its end: the dashboard's SampleCount is the wakes, its Sum the ones a
    // player came to.
    if let Some(w) = batch.wake {
        out.push((
            "WakeJoined",
            StandardUnit::Count,
            if w.joined { 1.0 } else { 0.0 },
        ));
    }
    out
}

#[async_trait]
impl Metrics for CloudWatch {
    async fn publish(&self, batch: &MetricsBatch) -> Result<(), AwsError> {
        let dimension = match self.group.group().await? {
            Some(g) => Dimension::builder()
                .name("AutoScalingGroupName")
                .value(g)
                .build(),
            None => Dimension::builder()
                .name("InstanceId")
                .value(self.group.instance_id())
                .build(),
        };
        let now = DateTime::from(SystemTime::now());
        let mut request = self.client.put_metric_data().namespace(&self.namespace);
        for (name, unit, value) in data(batch) {
            request = request.metric_data(
                MetricDatum::builder()
                    .metric_name(name)
                    .unit(unit)
                    .value(value)
                    .timestamp(now)
                    .dimensions(dimension.clone())
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|e| call_error(SERVICE, "PutMetricData", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_left_out() {
        let batch = MetricsBatch {
            inbound_packets: None,
            players_online: None,
            idle_seconds: 12.5,
            container_running: false,
            wake: None,
        };
        let names: Vec<_> = data(&batch).into_iter().map(|(n, _, v)| (n, v)).collect();
        assert_eq!(
            names,
            vec![
                ("IdleSeconds", 12.5),
                ("ContainerRunning", 0.0),
                ("AgentHeartbeat", 1.0)
            ]
        );
    }

    #[test]
    fn every_value_with_its_unit() {
        let batch = MetricsBatch {
            inbound_packets: Some(1234),
            players_online: Some(3),
            idle_seconds: 0.0,
            container_running: true,
            wake: None,
        };
        let d = data(&batch);
        assert_eq!(d.len(), 5);
        assert_eq!(d[0], ("InboundPackets", StandardUnit::Count, 1234.0));
        assert_eq!(d[1], ("PlayersOnline", StandardUnit::Count, 3.0));
        assert_eq!(d[2], ("IdleSeconds", StandardUnit::Seconds, 0.0));
        assert_eq!(d[3], ("ContainerRunning", StandardUnit::Count, 1.0));
        assert_eq!(d[4], ("AgentHeartbeat", StandardUnit::Count, 1.0));
    }

    #[test]
    fn a_wakes_end_adds_whether_a_player_came() {
        for (joined, value) in [(true, 1.0), (false, 0.0)] {
            let batch = MetricsBatch {
                inbound_packets: None,
                players_online: None,
                idle_seconds: 0.0,
                container_running: false,
                wake: Some(crate::decide::WakeOutcome {
                    joined,
                    up_for: std::time::Duration::from_secs(600),
                }),
            };
            let d = data(&batch);
            assert_eq!(d.last(), Some(&("WakeJoined", StandardUnit::Count, value)));
        }
    }
}
