//! Minecraft Java Edition's server-list ping (the "Status" state of the protocol), over TCP.
//!
//! Every packet is framed as `VarInt length, VarInt packet id, data`. The client sends the
//! handshake (id 0: VarInt protocol version, String host, unsigned short port, VarInt next
//! state = 1) and the status request (id 0, no data). The server answers with the status
//! response (id 0: one String holding JSON). Strings are a VarInt byte length and UTF-8.
//! From the JSON the probe reads `players.online`, `players.max` and `description`, which is
//! either a plain string or a chat component (`text` plus `extra`).
//!
//! The reply is untrusted: a frame longer than [`MAX_FRAME`] is refused before anything is
//! allocated, VarInts longer than 5 bytes are refused, and the whole exchange has one deadline.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::probe::{PlayerCount, ProbeError, resolve, within_deadline};

/// The protocol version sent in the handshake. By convention a client that only pings sends
/// -1: servers answer the status request whatever the version.
pub const PROTOCOL_VERSION: i32 = -1;

/// The largest status frame accepted. The protocol caps the JSON string at 32767 UTF-16 units,
/// at most 3 bytes each in UTF-8, so 128 KiB covers every real server (favicon included).
pub const MAX_FRAME: usize = 128 * 1024;

/// What is wrong with a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the reply ends inside the {0}")]
    Truncated(&'static str),
    #[error("a VarInt is longer than 5 bytes")]
    VarIntTooLong,
    #[error("the frame length {0} is out of range (expected 1 to {MAX_FRAME} bytes)")]
    FrameLength(i64),
    #[error("unexpected packet id {0} (expected 0, the status response)")]
    PacketId(i32),
    #[error("the JSON string length {0} does not fit in the frame")]
    StringLength(i64),
    #[error("the status is not valid JSON: {0}")]
    Json(String),
    #[error("players.{0} is {1}, not a count")]
    Count(&'static str, i64),
}

/// Appends `v` as a VarInt.
pub fn write_varint(out: &mut Vec<u8>, v: i32) {
    let mut u = v as u32;
    loop {
        let low = (u & 0x7f) as u8;
        u >>= 7;
        if u == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Reads a VarInt from the front of `buf`; returns it and the bytes used.
pub fn read_varint(buf: &[u8], what: &'static str) -> Result<(i32, usize), ParseError> {
    let mut v: u32 = 0;
    for i in 0..5 {
        let b = *buf.get(i).ok_or(ParseError::Truncated(what))?;
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v as i32, i + 1));
        }
    }
    Err(ParseError::VarIntTooLong)
}

fn frame(id: i32, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 5);
    write_varint(&mut body, id);
    body.extend_from_slice(data);
    let mut out = Vec::with_capacity(body.len() + 5);
    write_varint(&mut out, i32::try_from(body.len()).unwrap_or(i32::MAX));
    out.extend_from_slice(&body);
    out
}

/// The handshake (next state: status) followed by the status request.
pub fn request(host: &str, port: u16) -> Vec<u8> {
    let mut data = Vec::new();
    write_varint(&mut data, PROTOCOL_VERSION);
    // The protocol caps the host at 255 characters.
    let host: String = host.chars().take(255).collect();
    write_varint(&mut data, i32::try_from(host.len()).unwrap_or(0));
    data.extend_from_slice(host.as_bytes());
    data.extend_from_slice(&port.to_be_bytes());
    write_varint(&mut data, 1);
    let mut out = frame(0, &data);
    out.extend_from_slice(&frame(0, &[]));
    out
}

#[derive(Deserialize)]
struct Status {
    players: Players,
    #[serde(default)]
    description: serde_json::Value,
}

#[derive(Deserialize)]
struct Players {
    online: i64,
    max: i64,
}

/// Parses a status response frame's body (packet id and data, without the length).
pub fn parse_frame(body: &[u8]) -> Result<PlayerCount, ParseError> {
    let (id, used) = read_varint(body, "packet id")?;
    if id != 0 {
        return Err(ParseError::PacketId(id));
    }
    let rest = body.get(used..).unwrap_or_default();
    let (len, used) = read_varint(rest, "JSON length")?;
    let rest = rest.get(used..).unwrap_or_default();
    let json = usize::try_from(len)
        .ok()
        .and_then(|n| rest.get(..n))
        .ok_or(ParseError::StringLength(i64::from(len)))?;
    let status: Status =
        serde_json::from_slice(json).map_err(|e| ParseError::Json(e.to_string()))?;
    let count = |what, v: i64| u32::try_from(v).map_err(|_| ParseError::Count(what, v));
    Ok(PlayerCount {
        players: count("online", status.players.online)?,
        bots: 0,
        max_players: count("max", status.players.max)?,
        name: strip_formatting(&flatten(&status.description)),
    })
}

/// Parses a complete status response as read from the stream (length prefix included).
pub fn parse_response(bytes: &[u8]) -> Result<PlayerCount, ParseError> {
    let (len, used) = read_varint(bytes, "frame length")?;
    let len = frame_length(len)?;
    let body = bytes
        .get(used..)
        .and_then(|b| b.get(..len))
        .ok_or(ParseError::Truncated("frame"))?;
    parse_frame(body)
}

fn frame_length(len: i32) -> Result<usize, ParseError> {
    match usize::try_from(len) {
        Ok(n) if (1..=MAX_FRAME).contains(&n) => Ok(n),
        _ => Err(ParseError::FrameLength(i64::from(len))),
    }
}

/// The text of a description: a string, or a chat component with `text` and `extra`.
fn flatten(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(flatten).collect(),
        serde_json::Value::Object(o) => {
            let mut s = o.get("text").map(flatten).unwrap_or_default();
            if let Some(extra) = o.get("extra") {
                s.push_str(&flatten(extra));
            }
            s
        }
        _ => String::new(),
    }
}

/// Drops the legacy `§x` formatting codes.
fn strip_formatting(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '§' {
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}

/// Pings the server at `address` (`host:port`) within `timeout` overall.
pub async fn query(address: &str, timeout: Duration) -> Result<PlayerCount, ProbeError> {
    within_deadline(address, timeout, exchange(address)).await
}

async fn exchange(address: &str) -> Result<PlayerCount, ProbeError> {
    let io = |source| ProbeError::Io {
        address: address.to_string(),
        source,
    };
    let malformed = |e: ParseError| ProbeError::Malformed {
        address: address.to_string(),
        reason: e.to_string(),
    };
    let target = resolve(address).await?;
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut stream = TcpStream::connect(target).await.map_err(io)?;
    stream
        .write_all(&request(host, target.port()))
        .await
        .map_err(io)?;

    // The length prefix, one byte at a time so nothing past the frame is consumed.
    let mut prefix = Vec::with_capacity(5);
    let len = loop {
        let b = match stream.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(malformed(ParseError::Truncated("frame length")));
            }
            Err(e) => return Err(io(e)),
        };
        prefix.push(b);
        match read_varint(&prefix, "frame length") {
            Ok((v, _)) => break v,
            Err(ParseError::Truncated(_)) => {}
            Err(e) => return Err(malformed(e)),
        }
    };
    let len = frame_length(len).map_err(malformed)?;
    let mut body = vec![0u8; len];
    match stream.read_exact(&mut body).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(malformed(ParseError::Truncated("frame")));
        }
        Err(e) => return Err(io(e)),
    }
    parse_frame(&body).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn response(json: &str) -> Vec<u8> {
        let mut data = Vec::new();
        write_varint(&mut data, i32::try_from(json.len()).unwrap());
        data.extend_from_slice(json.as_bytes());
        frame(0, &data)
    }

    #[test]
    fn varints_from_the_protocol_docs() {
        let cases: [(i32, &[u8]); 7] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (25565, &[0xdd, 0xc7, 0x01]),
            (2_147_483_647, &[0xff, 0xff, 0xff, 0xff, 0x07]),
            (-1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(read_varint(bytes, "x"), Ok((v, bytes.len())));
        }
        assert_eq!(read_varint(&[0x80; 6], "x"), Err(ParseError::VarIntTooLong));
        assert_eq!(read_varint(&[0x80], "x"), Err(ParseError::Truncated("x")));
    }

    #[test]
    fn request_layout() {
        let r = request("mc.example.com", 25565);
        // Handshake: length, id 0, version -1 (5 bytes), host, port, next state 1.
        let (len, used) = read_varint(&r, "len").unwrap();
        let hs = &r[used..used + len as usize];
        assert_eq!(hs[0], 0);
        assert_eq!(&hs[1..6], &[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(hs[6] as usize, "mc.example.com".len());
        assert_eq!(&hs[7..21], b"mc.example.com");
        assert_eq!(&hs[21..23], &25565u16.to_be_bytes());
        assert_eq!(hs[23], 1);
        assert_eq!(&r[used + len as usize..], &[1, 0]);
    }

    #[test]
    fn plain_and_chat_descriptions() {
        let plain = r#"{"version":{"name":"1.21","protocol":767},"players":{"max":20,"online":3},"description":"§aHello"}"#;
        assert_eq!(
            parse_response(&response(plain)),
            Ok(PlayerCount {
                players: 3,
                max_players: 20,
                bots: 0,
                name: "Hello".into()
            })
        );
        let chat = r#"{"players":{"max":10,"online":0,"sample":[]},"description":{"text":"A ","extra":[{"text":"B","bold":true},"C"]}}"#;
        assert_eq!(
            parse_response(&response(chat)),
            Ok(PlayerCount {
                players: 0,
                max_players: 10,
                bots: 0,
                name: "A BC".into()
            })
        );
    }

    #[test]
    fn bad_replies() {
        assert!(matches!(
            parse_response(&response(r#"{"players":{"max":1}}"#)),
            Err(ParseError::Json(_))
        ));
        assert_eq!(
            parse_response(&response(r#"{"players":{"max":1,"online":-4}}"#)),
            Err(ParseError::Count("online", -4))
        );
        assert!(matches!(
            parse_response(&response("not json")),
            Err(ParseError::Json(_))
        ));
        assert_eq!(
            parse_response(&frame(1, b"\x00")),
            Err(ParseError::PacketId(1))
        );
        // A frame length of 2 GiB is refused before anything is read or allocated.
        assert_eq!(
            parse_response(&[0xff, 0xff, 0xff, 0xff, 0x07]),
            Err(ParseError::FrameLength(2_147_483_647))
        );
        assert_eq!(parse_response(&[0x00]), Err(ParseError::FrameLength(0)));
        // A JSON length beyond the frame.
        assert_eq!(
            parse_frame(&[0x00, 0xff, 0x01, b'{']),
            Err(ParseError::StringLength(255))
        );
        let full = response(r#"{"players":{"max":1,"online":1},"description":""}"#);
        for cut in 0..full.len() {
            assert!(parse_response(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_response(&full).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_response(&bytes);
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn never_panics_on_framed_json(json in "\\PC{0,120}") {
            let _ = parse_response(&response(&json));
        }

        #[test]
        fn varint_round_trips(v in any::<i32>()) {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            prop_assert_eq!(read_varint(&out, "v"), Ok((v, out.len())));
        }

        #[test]
        fn counts_round_trip(online in any::<u32>(), max in any::<u32>(), name in "[a-zA-Z0-9 ]{0,30}") {
            let json = serde_json::json!({"players": {"online": online, "max": max}, "description": {"text": name}}).to_string();
            prop_assert_eq!(parse_response(&response(&json)), Ok(PlayerCount { players: online, bots: 0, max_players: max, name }));
        }
    }
}
