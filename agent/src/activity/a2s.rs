//! Steam's A2S_INFO query (Valve developer wiki, "Server queries"), over UDP.
//!
//! The client sends `FF FF FF FF 'T' "Source Engine Query\0"`. Current servers first answer
//! with `S2C_CHALLENGE` (`FF FF FF FF 'A'` and a 4-byte challenge); the client then repeats the
//! request with the challenge appended. The info reply is `FF FF FF FF 'I'` (Source) or
//! `FF FF FF FF 'm'` (the obsolete GoldSource format); both carry the server name, the
//! player and maximum player counts, and the number of bots, which the player count includes:
//! the probe reports humans only (players minus bots). Split replies (`FF FF FF FE`) are not supported: an info
//! reply fits one packet.
//!
//! The reply is untrusted: the parser reads only within the datagram, the receive buffer has a
//! fixed size, and the whole exchange has one deadline. A lost datagram is resent every
//! [`RESEND_EVERY`] until the deadline.

use std::time::Duration;

use tokio::net::UdpSocket;

use super::probe::{PlayerCount, ProbeError, resolve, within_deadline};

/// The A2S_INFO request without a challenge.
pub const REQUEST: &[u8] = b"\xFF\xFF\xFF\xFFTSource Engine Query\0";

/// How long to wait for a reply before sending the request again.
pub const RESEND_EVERY: Duration = Duration::from_millis(500);

/// At most this many challenges are answered before the server is called malformed.
const MAX_CHALLENGES: usize = 4;

/// The largest UDP payload; the receive buffer never grows beyond it.
const MAX_DATAGRAM: usize = 65_535;

/// What is wrong with a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the reply is {0} bytes, too short for a header")]
    TooShort(usize),
    #[error("the reply does not start with FF FF FF FF (split replies are not supported)")]
    BadHeader,
    #[error("unexpected reply type {0:#04x}")]
    UnexpectedType(u8),
    #[error("the challenge is {0} bytes (expected 4)")]
    BadChallenge(usize),
    #[error("the reply ends inside the {0} field")]
    Truncated(&'static str),
}

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `S2C_CHALLENGE`: send the request again with these bytes appended.
    Challenge([u8; 4]),
    Info(PlayerCount),
}

/// The request, with the challenge appended when the server asked for one.
pub fn request(challenge: Option<[u8; 4]>) -> Vec<u8> {
    let mut r = REQUEST.to_vec();
    if let Some(c) = challenge {
        r.extend_from_slice(&c);
    }
    r
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self, field: &'static str) -> Result<u8, ParseError> {
        let (&b, rest) = self.buf.split_first().ok_or(ParseError::Truncated(field))?;
        self.buf = rest;
        Ok(b)
    }

    fn string(&mut self, field: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ParseError::Truncated(field))?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..).unwrap_or_default();
        Ok(s)
    }

    fn skip(&mut self, n: usize, field: &'static str) -> Result<(), ParseError> {
        self.buf = self.buf.get(n..).ok_or(ParseError::Truncated(field))?;
        Ok(())
    }
}

/// The count of one info reply. A2S counts bots among the players and gives their number
/// apart; only humans keep a server awake, so the bots are taken off (a bots field larger than
/// the players field, which a broken server could send, leaves 0 humans).
fn count(name: &[u8], players: u8, max_players: u8, bots: u8) -> PlayerCount {
    PlayerCount {
        players: u32::from(players.saturating_sub(bots)),
        bots: u32::from(bots),
        max_players: u32::from(max_players),
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

/// Parses one datagram from the server.
pub fn parse_reply(datagram: &[u8]) -> Result<Reply, ParseError> {
    let Some((header, body)) = datagram.split_first_chunk::<5>() else {
        return Err(ParseError::TooShort(datagram.len()));
    };
    if header[..4] != [0xFF; 4] {
        return Err(ParseError::BadHeader);
    }
    let mut r = Reader { buf: body };
    match header[4] {
        b'A' => {
            let c: [u8; 4] = body
                .try_into()
                .map_err(|_| ParseError::BadChallenge(body.len()))?;
            Ok(Reply::Challenge(c))
        }
        b'I' => {
            r.byte("protocol")?;
            let name = r.string("name")?;
            r.string("map")?;
            r.string("folder")?;
            r.string("game")?;
            r.skip(2, "app id")?;
            let players = r.byte("players")?;
            let max_players = r.byte("max players")?;
            let bots = r.byte("bots")?;
            Ok(Reply::Info(count(name, players, max_players, bots)))
        }
        b'm' => {
            r.string("address")?;
            let name = r.string("name")?;
            r.string("map")?;
            r.string("folder")?;
            r.string("game")?;
            let players = r.byte("players")?;
            let max_players = r.byte("max players")?;
            r.skip(3, "protocol, type and environment")?;
            r.byte("visibility")?;
            if r.byte("mod")? == 1 {
                r.string("mod link")?;
                r.string("mod download link")?;
                r.skip(1 + 4 + 4 + 1 + 1, "mod details")?;
            }
            r.byte("VAC")?;
            let bots = r.byte("bots")?;
            Ok(Reply::Info(count(name, players, max_players, bots)))
        }
        other => Err(ParseError::UnexpectedType(other)),
    }
}

/// Asks the server at `address` (`host:port`) for its info, within `timeout` overall.
pub async fn query(address: &str, timeout: Duration) -> Result<PlayerCount, ProbeError> {
    within_deadline(address, timeout, exchange(address)).await
}

async fn exchange(address: &str) -> Result<PlayerCount, ProbeError> {
    let io = |source| ProbeError::Io {
        address: address.to_string(),
        source,
    };
    let target = resolve(address).await?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected: only the server's datagrams arrive, and a refusal (ICMP port unreachable)
    // surfaces as an error instead of a silent wait.
    socket.connect(target).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut challenge = None;
    for _ in 0..=MAX_CHALLENGES {
        let req = request(challenge);
        let n = loop {
            socket.send(&req).await.map_err(io)?;
            match tokio::time::timeout(RESEND_EVERY, socket.recv(&mut buf)).await {
                Ok(r) => break r.map_err(io)?,
                Err(_) => continue,
            }
        };
        let datagram = buf.get(..n).unwrap_or_default();
        match parse_reply(datagram) {
            Ok(Reply::Info(count)) => return Ok(count),
            Ok(Reply::Challenge(c)) => challenge = Some(c),
            Err(e) => {
                return Err(ProbeError::Malformed {
                    address: address.to_string(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Err(ProbeError::Malformed {
        address: address.to_string(),
        reason: format!("the server sent more than {MAX_CHALLENGES} challenges"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(name: &str, players: u8, max: u8) -> Vec<u8> {
        info_with_bots(name, players, max, 0)
    }

    fn info_with_bots(name: &str, players: u8, max: u8, bots: u8) -> Vec<u8> {
        let mut v = b"\xFF\xFF\xFF\xFFI\x11".to_vec();
        for s in [name, "map", "folder", "game"] {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        v.extend_from_slice(&[0x1a, 0x0a, players, max, bots, b'd', b'l', 0, 1]);
        v.extend_from_slice(b"1.0\0");
        v
    }

    #[test]
    fn source_info() {
        assert_eq!(
            parse_reply(&info("My server", 3, 10)),
            Ok(Reply::Info(PlayerCount {
                players: 3,
                bots: 0,
                max_players: 10,
                name: "My server".into()
            }))
        );
    }

    fn goldsource(players: u8, max: u8, bots: u8, with_mod: bool) -> Vec<u8> {
        let mut v = b"\xFF\xFF\xFF\xFFm".to_vec();
        for s in ["1.2.3.4:27015", "Old", "map", "cstrike", "CS"] {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        // players, max, protocol, type, environment, visibility, mod
        v.extend_from_slice(&[players, max, 47, b'd', b'l', 0, u8::from(with_mod)]);
        if with_mod {
            v.extend_from_slice(b"http://mod\0http://dl\0\0");
            v.extend_from_slice(&[1, 0, 0, 0, 0, 16, 0, 0, 1, 1]); // version, size, type, dll
        }
        v.extend_from_slice(&[1, bots]); // VAC, bots
        v
    }

    #[test]
    fn goldsource_info() {
        for with_mod in [false, true] {
            assert_eq!(
                parse_reply(&goldsource(5, 16, 2, with_mod)),
                Ok(Reply::Info(PlayerCount {
                    players: 3,
                    bots: 2,
                    max_players: 16,
                    name: "Old".into()
                })),
                "with_mod: {with_mod}"
            );
        }
        let full = goldsource(5, 16, 2, true);
        assert_eq!(
            parse_reply(&full[..full.len() - 1]),
            Err(ParseError::Truncated("bots"))
        );
    }

    #[test]
    fn bots_are_not_players() {
        // A server that fills its slots with bots and has no human is empty.
        assert_eq!(
            parse_reply(&info_with_bots("Bots only", 6, 10, 6)),
            Ok(Reply::Info(PlayerCount {
                players: 0,
                bots: 6,
                max_players: 10,
                name: "Bots only".into()
            }))
        );
        // Two humans among bots count as two.
        let Ok(Reply::Info(c)) = parse_reply(&info_with_bots("Mixed", 8, 10, 6)) else {
            panic!("not an info reply");
        };
        assert_eq!((c.players, c.bots), (2, 6));
        // A broken server that reports more bots than players has no human, not a huge count.
        let Ok(Reply::Info(c)) = parse_reply(&info_with_bots("Broken", 1, 10, 9)) else {
            panic!("not an info reply");
        };
        assert_eq!((c.players, c.bots), (0, 9));
    }

    #[test]
    fn challenge() {
        assert_eq!(
            parse_reply(b"\xFF\xFF\xFF\xFFA\x01\x02\x03\x04"),
            Ok(Reply::Challenge([1, 2, 3, 4]))
        );
        assert_eq!(
            parse_reply(b"\xFF\xFF\xFF\xFFA\x01\x02"),
            Err(ParseError::BadChallenge(2))
        );
        assert_eq!(request(Some([9, 8, 7, 6])).len(), REQUEST.len() + 4);
        assert!(request(Some([9, 8, 7, 6])).ends_with(&[9, 8, 7, 6]));
    }

    #[test]
    fn truncated_and_garbage() {
        let full = info("n", 1, 2);
        for cut in 0..full.len() {
            let r = parse_reply(&full[..cut]);
            // The parser needs everything up to the bots; the 8 bytes after them are unused.
            assert_eq!(r.is_ok(), cut >= full.len() - 8, "cut at {cut}: {r:?}");
        }
        assert_eq!(
            parse_reply(b"\xFF\xFF\xFF\xFEI"),
            Err(ParseError::BadHeader)
        );
        assert_eq!(
            parse_reply(b"\xFF\xFF\xFF\xFFZ"),
            Err(ParseError::UnexpectedType(b'Z'))
        );
        assert_eq!(parse_reply(b""), Err(ParseError::TooShort(0)));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_reply(&bytes);
        }

        #[test]
        fn never_panics_after_a_valid_header(t in prop_oneof![Just(b'I'), Just(b'm'), Just(b'A'), any::<u8>()],
                                             body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut v = vec![0xFF, 0xFF, 0xFF, 0xFF, t];
            v.extend_from_slice(&body);
            let _ = parse_reply(&v);
        }

        #[test]
        fn round_trips(name in "[a-zA-Z0-9 ]{0,40}", players in any::<u8>(), max in any::<u8>(), bots in any::<u8>()) {
            let parsed = parse_reply(&info_with_bots(&name, players, max, bots));
            let humans = u32::from(players.saturating_sub(bots));
            prop_assert_eq!(parsed, Ok(Reply::Info(PlayerCount { players: humans, bots: u32::from(bots), max_players: u32::from(max), name })));
        }
    }
}
