//! What one sample says about players: the [`Evidence`] behind rules 3, 4 and 5 (active or
//! not), and behind rule 7's backstop (whether it confirms someone is there).

use super::input::{Observation, PacketReading, ProbeReading};

/// Whether one observation shows activity, and on what basis (rules 3, 4 and 5).
pub fn classify(obs: &Observation, min_pps: f64) -> (bool, &'static str) {
    let e = Evidence::of(obs, min_pps);
    (e.active(), e.basis())
}

/// What one observation says about players (rules 3, 4 and 5), before gaps between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The keep-awake file exists: the operator's word.
    KeepAwake,
    /// The probe counted players.
    Players,
    /// No probe answer, and the game's ports saw traffic at the threshold.
    Traffic,
    /// The probe answered 0.
    NoPlayers,
    /// No probe answer, and the ports were quiet.
    Quiet,
    /// No probe answer, and the packets could not be counted: active, but confirms nobody.
    Uncounted,
}

impl Evidence {
    pub fn of(obs: &Observation, min_pps: f64) -> Self {
        if obs.keep_awake == Some(true) {
            return Self::KeepAwake;
        }
        match &obs.probe {
            Some(ProbeReading::Players { online, .. }) if *online > 0 => return Self::Players,
            Some(ProbeReading::Players { .. }) => return Self::NoPlayers,
            Some(ProbeReading::Failed { .. }) | None => {}
        }
        match &obs.packets {
            PacketReading::Unknown { .. } => Self::Uncounted,
            PacketReading::Known { total, .. } => {
                let secs = obs.interval.as_secs_f64();
                let rate = if secs > 0.0 {
                    *total as f64 / secs
                } else {
                    0.0
                };
                if rate >= min_pps && *total > 0 {
                    Self::Traffic
                } else {
                    Self::Quiet
                }
            }
        }
    }

    /// Whether it keeps the server awake (rule 4: not knowing counts as active).
    pub fn active(self) -> bool {
        !matches!(self, Self::NoPlayers | Self::Quiet)
    }

    /// Whether it confirms someone is there (or the operator wants the server up): rule 7's
    /// backstop stops only servers without it. An error in measuring confirms nobody.
    pub fn confirms(self) -> bool {
        matches!(self, Self::KeepAwake | Self::Players | Self::Traffic)
    }

    pub fn basis(self) -> &'static str {
        match self {
            Self::KeepAwake => "the keep-awake file exists",
            Self::Players => "players are online",
            Self::Traffic => "game traffic",
            Self::NoPlayers => "the game reports 0 players",
            Self::Quiet => "game traffic below the threshold",
            Self::Uncounted => "packets could not be counted",
        }
    }
}
