//! `[dns]`: the record pointed at the instance while it runs, and away when it stops.

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::check::Ctx;
use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    hosted_zone_id: String,
    record_name: String,
    #[serde(default = "d_ttl")]
    ttl: i64,
    #[serde(default = "d_unavailable")]
    unavailable_ipv4: String,
    #[serde(default)]
    ipv6: bool,
}

pub(super) fn d_ttl() -> i64 {
    1
}
fn d_unavailable() -> String {
    "0.0.0.0".into()
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
    pub(super) fn validate(self, cx: &Ctx<'_>) -> Result<DnsConfig, ConfigError> {
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
                    "",
                    "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a.b\"\nttls = 3",
                ),
                "dns.ttls",
                "unknown key",
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
        ]);
    }
}
