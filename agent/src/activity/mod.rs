//! Activity signals: inbound packet counts per port spec, counted in the kernel, and the
//! game's own player count.
//!
//! [`PacketCounter`] and [`Probe`] are the two narrow traits the run loop samples through.
//!
//! - [`bpf`]: generates the classic BPF filter for one port spec (pure, property-tested).
//! - [`packet`]: the `AF_PACKET` counter; with [`iface`], the only modules with `unsafe` code.
//! - [`iface`]: whether an interface exists, and its index (`if_nametoindex`).
//! - [`route`]: which interface `interface = "auto"` means (the default route's).
//! - [`a2s`], [`minecraft`]: the player-count probes; replies are untrusted input.
//! - [`cli`]: the `activity` and `probe` diagnostic commands.

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

pub mod a2s;
pub mod bpf;
pub mod cli;
pub mod iface;
pub mod minecraft;
pub mod packet;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{ActivityConfig, ProbeConfig, ProbeKind};

/// Opens the kernel packet counter for the configured interface and ports.
///
/// A missing interface is not an error: the counter keeps trying to open it and its samples
/// are unknown until then. Socket errors (no permission, no `AF_PACKET`) are.
pub fn open_counter(config: &ActivityConfig) -> Result<Box<dyn PacketCounter>, CounterError> {
    let counter = packet::KernelCounter::open(
        config.interface.clone(),
        config.ports.clone(),
        packet::Backoff::default(),
    )?;
    Ok(Box::new(counter))
}

/// The probe for the configured game protocol.
pub fn probe_for(config: &ProbeConfig) -> Arc<dyn Probe> {
    Arc::new(GameProbe(config.clone()))
}

/// Asks the game with the configured protocol, within the configured timeout.
#[derive(Debug)]
struct GameProbe(ProbeConfig);

#[async_trait]
impl Probe for GameProbe {
    async fn players(&self) -> Result<PlayerCount, ProbeError> {
        query(self.0.kind, &self.0.address, self.0.timeout).await
    }
}

/// One probe of `address` with the given protocol, within `timeout` overall.
pub async fn query(
    kind: ProbeKind,
    address: &str,
    timeout: Duration,
) -> Result<PlayerCount, ProbeError> {
    match kind {
        ProbeKind::A2s => a2s::query(address, timeout).await,
        ProbeKind::Minecraft => minecraft::query(address, timeout).await,
    }
}

/// Resolves `host:port` to its first address (names are resolved at each probe).
/// Runs one probe exchange within `timeout` overall: a slow, silent or dripping server is a
/// timeout, whatever step it stalls in.
async fn within_deadline(
    address: &str,
    timeout: Duration,
    exchange: impl Future<Output = Result<PlayerCount, ProbeError>>,
) -> Result<PlayerCount, ProbeError> {
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::Timeout {
                address: address.to_string(),
                timeout,
            })
        })
}

async fn resolve(address: &str) -> Result<SocketAddr, ProbeError> {
    let io = |source| ProbeError::Io {
        address: address.to_string(),
        source,
    };
    tokio::net::lookup_host(address)
        .await
        .map_err(io)?
        .next()
        .ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            ))
        })
}
