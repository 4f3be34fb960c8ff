//! What a packet counter is to the run loop: the [`PacketCounter`] trait and its error. The
//! kernel counter ([`super::packet`]) implements it.

use std::time::Duration;

/// Why counting failed. A failed count is "unknown", never zero.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("interface {interface:?} is not available: {reason}")]
    Interface { interface: String, reason: String },
    #[error("packet socket for {spec} failed: {source}")]
    Socket {
        spec: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the counter is reopening after a failure (next try in {retry_in:?})")]
    Reopening { retry_in: Duration },
}

/// Counts inbound packets to the configured port specs.
pub trait PacketCounter: Send + std::fmt::Debug {
    /// Packets that arrived since the previous call, one entry per configured port spec, in
    /// config order. The first call after opening returns the packets since opening.
    fn take(&mut self) -> Result<Vec<u64>, CounterError>;
}
