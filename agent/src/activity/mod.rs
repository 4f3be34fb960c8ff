//! Activity signals: inbound packet counts per port spec, counted in the kernel, and the
//! game's own player count.
//!
//! [`PacketCounter`] and [`Probe`] are the two narrow traits the run loop samples through.

use std::time::Duration;

use async_trait::async_trait;

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

/// The player count a game reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlayerCount {
    pub players: u32,
    pub max_players: u32,
    pub name: String,
}

/// Why a probe got no player count.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no reply from {address} within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("cannot reach {address}: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed reply from {address}: {reason}")]
    Malformed { address: String, reason: String },
}

/// Asks the game how many players are online.
#[async_trait]
pub trait Probe: Send + Sync + std::fmt::Debug {
    async fn players(&self) -> Result<PlayerCount, ProbeError>;
}

pub mod cli;

use std::sync::Arc;

use crate::config::{ActivityConfig, ProbeConfig};

/// Opens the kernel packet counter for the configured interface and ports.
pub fn open_counter(config: &ActivityConfig) -> Result<Box<dyn PacketCounter>, CounterError> {
    let _ = config;
    Err(CounterError::Interface {
        interface: "(any)".into(),
        reason: "the packet counter is not part of this build yet".into(),
    })
}

/// The probe for the configured game protocol.
pub fn probe_for(config: &ProbeConfig) -> Arc<dyn Probe> {
    Arc::new(Unavailable(config.address.clone()))
}

/// A probe that always fails: it never claims a player count.
#[derive(Debug)]
struct Unavailable(String);

#[async_trait]
impl Probe for Unavailable {
    async fn players(&self) -> Result<PlayerCount, ProbeError> {
        Err(ProbeError::Malformed {
            address: self.0.clone(),
            reason: "the probe is not part of this build yet".into(),
        })
    }
}
