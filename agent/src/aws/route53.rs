//! The server's Route53 record: point it here on boot, set it back on the way out.
//!
//! The revert is guarded: one change batch DELETEs our exact record (name, type, TTL, value)
//! and CREATEs the placeholder. Route53 applies a batch all or nothing and rejects a DELETE
//! whose values do not match, so a newer instance's address is never overwritten.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::error::{DisplayErrorContext, SdkError};
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use tokio::time::{Instant, sleep};
use tracing::{debug, info, warn};

use super::traits::{AwsError, DnsRecord, Identity, RevertOutcome};
use crate::config::DnsConfig;

const SERVICE: &str = "route53";

/// How long `point_here` waits for INSYNC. Kept under the run loop's per-call bound
/// (`run::CALL_TIMEOUT`, 30 s) so a slow propagation is not mistaken for a failed call.
pub const INSYNC_WAIT: Duration = Duration::from_secs(20);
const INSYNC_POLL: Duration = Duration::from_secs(1);

/// The record for this instance.
#[derive(Debug, Clone)]
pub struct Route53Record {
    client: Client,
    config: DnsConfig,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    insync_wait: Duration,
}

impl Route53Record {
    pub fn new(client: Client, config: DnsConfig, identity: &Identity) -> Self {
        Self {
            client,
            config,
            ipv4: identity.public_ipv4,
            ipv6: identity.ipv6,
            insync_wait: INSYNC_WAIT,
        }
    }

    /// The AAAA address to manage: only when `dns.ipv6` is on and the instance has one.
    fn managed_ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6.filter(|_| self.config.ipv6)
    }

    fn record(&self, rtype: RrType, value: String) -> Result<ResourceRecordSet, AwsError> {
        let rr = ResourceRecord::builder()
            .value(value)
            .build()
            .map_err(invalid)?;
        ResourceRecordSet::builder()
            .name(self.config.record_name.clone())
            .r#type(rtype)
            .ttl(self.config.ttl)
            .resource_records(rr)
            .build()
            .map_err(invalid)
    }

    async fn submit(
        &self,
        changes: Vec<(ChangeAction, ResourceRecordSet)>,
        comment: &str,
    ) -> Result<String, SdkError<ChangeResourceRecordSetsError>> {
        let mut batch = ChangeBatch::builder().comment(comment);
        for (action, set) in changes {
            let change = Change::builder()
                .action(action)
                .resource_record_set(set)
                .build()
                .map_err(SdkError::construction_failure)?;
            batch = batch.changes(change);
        }
        let batch = batch.build().map_err(SdkError::construction_failure)?;
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(&self.config.hosted_zone_id)
            .change_batch(batch)
            .send()
            .await?;
        Ok(out
            .change_info()
            .map(|c| c.id().to_string())
            .unwrap_or_default())
    }

    /// Polls GetChange until INSYNC or `insync_wait` passes. Returns whether it is in sync.
    async fn wait_insync(&self, change_id: &str) -> Result<bool, AwsError> {
        if change_id.is_empty() {
            return Ok(false);
        }
        let deadline = Instant::now() + self.insync_wait;
        loop {
            let out = self
                .client
                .get_change()
                .id(change_id)
                .send()
                .await
                .map_err(|e| call_error("GetChange", &e))?;
            if out.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync) {
                return Ok(true);
            }
            if Instant::now() + INSYNC_POLL > deadline {
                return Ok(false);
            }
            sleep(INSYNC_POLL).await;
        }
    }

    /// The record's current values (comma-separated), or `None` when it does not exist.
    async fn current(&self, rtype: RrType) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&self.config.hosted_zone_id)
            .start_record_name(&self.config.record_name)
            .start_record_type(rtype.clone())
            .max_items(1)
            .send()
            .await
            .map_err(|e| call_error("ListResourceRecordSets", &e))?;
        let want = self.config.record_name.trim_end_matches('.');
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|s| {
                s.name().trim_end_matches('.').eq_ignore_ascii_case(want) && *s.r#type() == rtype
            })
            .map(|s| {
                s.resource_records()
                    .iter()
                    .map(|r| r.value())
                    .collect::<Vec<_>>()
                    .join(",")
            }))
    }
}

#[async_trait]
impl DnsRecord for Route53Record {
    async fn point_here(&self) -> Result<String, AwsError> {
        let ipv4 = self.ipv4.ok_or_else(|| {
            AwsError::Invalid(format!(
                "this instance has no public IPv4 address (IMDS meta-data/public-ipv4 is missing), so {} cannot point at it; give the instances a public IP (subnet setting MapPublicIpOnLaunch or the launch template)",
                self.config.record_name
            ))
        })?;
        let mut changes = vec![(
            ChangeAction::Upsert,
            self.record(RrType::A, ipv4.to_string())?,
        )];
        let mut written = ipv4.to_string();
        match self.managed_ipv6() {
            Some(v6) => {
                changes.push((
                    ChangeAction::Upsert,
                    self.record(RrType::Aaaa, v6.to_string())?,
                ));
                written = format!("{written},{v6}");
            }
            None if self.config.ipv6 => warn!(
                record = %self.config.record_name,
                "dns.ipv6 is on but this instance has no IPv6 address; only the A record is set."
            ),
            None => {}
        }
        let started = Instant::now();
        let change_id = self
            .submit(changes, "container-manager: point at this instance")
            .await
            .map_err(|e| call_error("ChangeResourceRecordSets", &e))?;
        info!(event = "dns_change_submitted", record = %self.config.record_name, ip = %written, change = %change_id, "Route53 change submitted.");
        if self.wait_insync(&change_id).await? {
            debug!(change = %change_id, waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), "Route53 change is in sync.");
        } else {
            // Route53 has accepted the change and will apply it; only the confirmation is
            // late. Retrying the UPSERT would not make it faster.
            warn!(change = %change_id, waited_s = self.insync_wait.as_secs(), "Route53 change not yet in sync; it was accepted and will propagate.");
        }
        Ok(written)
    }

    async fn revert(&self) -> Result<RevertOutcome, AwsError> {
        let Some(ipv4) = self.ipv4 else {
            // We never wrote an A record, so whatever is there is not ours.
            let current = self.current(RrType::A).await?;
            return Ok(RevertOutcome::NotOurs { current });
        };
        let placeholder = self.config.unavailable_ipv4.to_string();
        let ours = self.record(RrType::A, ipv4.to_string())?;
        let replacement = self.record(RrType::A, placeholder.clone())?;
        let outcome = match self
            .submit(
                vec![
                    (ChangeAction::Delete, ours),
                    (ChangeAction::Create, replacement),
                ],
                "container-manager: this instance is going away",
            )
            .await
        {
            Ok(change) => {
                debug!(change = %change, "Route53 revert submitted.");
                RevertOutcome::Reverted
            }
            Err(e) if is_invalid_change_batch(&e) => {
                let current = self.current(RrType::A).await?;
                debug!(error = %DisplayErrorContext(&e), current = ?current, "Route53 rejected the guarded DELETE.");
                if current.as_deref() == Some(placeholder.as_str()) {
                    // Already the placeholder: an earlier attempt succeeded but its answer
                    // was lost.
                    RevertOutcome::Reverted
                } else {
                    RevertOutcome::NotOurs { current }
                }
            }
            Err(e) => return Err(call_error("ChangeResourceRecordSets", &e)),
        };
        if let Some(v6) = self.managed_ipv6() {
            // No placeholder for AAAA: clients then use the A record's placeholder.
            let ours = self.record(RrType::Aaaa, v6.to_string())?;
            match self
                .submit(
                    vec![(ChangeAction::Delete, ours)],
                    "container-manager: this instance is going away",
                )
                .await
            {
                Ok(_) => debug!("AAAA record deleted."),
                Err(e) if is_invalid_change_batch(&e) => {
                    let current = self.current(RrType::Aaaa).await.ok().flatten();
                    info!(current = ?current, "AAAA record no longer holds our address; left alone.");
                }
                Err(e) => return Err(call_error("ChangeResourceRecordSets", &e)),
            }
        }
        Ok(outcome)
    }
}

fn is_invalid_change_batch(e: &SdkError<ChangeResourceRecordSetsError>) -> bool {
    matches!(
        e.as_service_error(),
        Some(ChangeResourceRecordSetsError::InvalidChangeBatch(_))
    )
}

fn invalid(e: aws_sdk_route53::error::BuildError) -> AwsError {
    AwsError::Invalid(format!("cannot build the Route53 request: {e}"))
}

fn call_error<E>(call: &'static str, e: &E) -> AwsError
where
    E: std::error::Error + aws_sdk_sns::error::ProvideErrorMetadata + 'static,
{
    super::traits::call_error(SERVICE, call, e)
}
