//! Activity signals: inbound packet counts per port spec, counted in the kernel, and the
//! game's own player count.
//!
//! [`PacketCounter`] and [`Probe`] are the two narrow traits the run loop samples through.
//!
//! - [`counter`], [`probe`]: the two traits, their values and errors; what every probe shares.
//! - [`bpf`]: generates the classic BPF filter for one port spec (pure, property-tested).
//! - [`packet`]: the `AF_PACKET` counter; with [`iface`], the only modules with `unsafe` code.
//! - [`iface`]: whether an interface exists, and its index (`if_nametoindex`).
//! - [`route`]: which interface `interface = "auto"` means (the default route's).
//! - [`a2s`], [`minecraft`]: the player-count probes; replies are untrusted input.
//! - [`cli`]: the `activity` and `probe` diagnostic commands.

use std::time::Duration;

use async_trait::async_trait;

pub mod a2s;
pub mod bpf;
pub mod cli;
pub mod counter;
pub mod iface;
pub mod minecraft;
pub mod packet;
pub mod probe;
pub mod route;

use std::sync::Arc;

use crate::config::{ActivityConfig, ProbeConfig, ProbeKind};

pub use counter::{CounterError, PacketCounter};
pub use probe::{PlayerCount, Probe, ProbeError};

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
