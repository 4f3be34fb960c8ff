//! What a probe is to the run loop: the [`Probe`] trait, the player count and the error, and
//! what every game protocol's exchange shares (one deadline overall, the name resolved at each
//! probe). The protocols ([`super::a2s`], [`super::minecraft`]) build on it.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

/// The player count a game reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlayerCount {
    /// Human players only: a game that fills slots with bots reports them apart (A2S's bots
    /// field), and they are not counted here. A server with bots and no human is empty.
    pub players: u32,
    /// The bots the game reported on top of `players` (0 when the protocol has none).
    pub bots: u32,
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

/// Runs one probe exchange within `timeout` overall: a slow, silent or dripping server is a
/// timeout, whatever step it stalls in.
pub(super) async fn within_deadline(
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

/// Resolves `host:port` to its first address (names are resolved at each probe).
pub(super) async fn resolve(address: &str) -> Result<SocketAddr, ProbeError> {
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
