//! Test game servers speaking the real query protocols, written from their documentation
//! (Valve developer wiki "Server queries"; the Minecraft protocol's "Server List Ping"), and
//! able to misbehave on purpose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const A2S_REQUEST: &[u8] = b"\xFF\xFF\xFF\xFFTSource Engine Query\0";

#[derive(Debug, Clone)]
pub enum A2sMode {
    /// Answers every request with the info.
    Plain,
    /// Demands the challenge `0xDEADBEEF` first, as current Source servers do.
    Challenge,
    /// Never answers.
    Silent,
    /// Answers with the first `n` bytes of the info.
    Truncated(usize),
    /// Answers with these bytes.
    Raw(Vec<u8>),
    /// Answers every request with a fresh challenge, forever.
    EndlessChallenges,
}

pub struct A2sServer {
    pub addr: SocketAddr,
    /// Valid requests seen (with the right challenge when one is required).
    pub requests: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Drop for A2sServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Source A2S_INFO reply, field by field as documented.
pub fn a2s_info(name: &str, players: u8, max: u8) -> Vec<u8> {
    a2s_info_with_bots(name, players, max, 0)
}

/// The same reply from a server with `bots` bots among its `players` (A2S counts them in).
pub fn a2s_info_with_bots(name: &str, players: u8, max: u8, bots: u8) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFF, 0xFF, 0xFF, b'I', 17];
    for s in [name, "de_dust2", "valheim", "Valheim"] {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v.extend_from_slice(&892_970u32.to_le_bytes()[..2]); // app id (short)
    v.extend_from_slice(&[players, max, bots, b'd', b'l', 0, 1]); // players, max, bots, type, env, visibility, vac
    v.extend_from_slice(b"0.217.46\0");
    v.push(0x00); // extra data flag: none
    v
}

pub async fn a2s_server(mode: A2sMode) -> A2sServer {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let requests = Arc::new(AtomicU32::new(0));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut nonce = 0u32;
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let req = &buf[..n];
            assert!(
                req.starts_with(A2S_REQUEST),
                "not an A2S_INFO request: {req:?}"
            );
            let challenge = &req[A2S_REQUEST.len()..];
            let reply = match &mode {
                A2sMode::Plain => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    a2s_info("Plain server", 3, 10)
                }
                A2sMode::Challenge => {
                    if challenge == [0xDE, 0xAD, 0xBE, 0xEF] {
                        seen.fetch_add(1, Ordering::SeqCst);
                        a2s_info("Challenged server", 7, 64)
                    } else {
                        b"\xFF\xFF\xFF\xFFA\xDE\xAD\xBE\xEF".to_vec()
                    }
                }
                A2sMode::Silent => continue,
                A2sMode::Truncated(k) => a2s_info("Cut", 1, 2)[..*k].to_vec(),
                A2sMode::Raw(bytes) => bytes.clone(),
                A2sMode::EndlessChallenges => {
                    nonce += 1;
                    let mut v = b"\xFF\xFF\xFF\xFFA".to_vec();
                    v.extend_from_slice(&nonce.to_le_bytes());
                    v
                }
            };
            let _ = socket.send_to(&reply, from).await;
        }
    });
    A2sServer {
        addr,
        requests,
        task,
    }
}

#[derive(Debug, Clone)]
pub enum McMode {
    /// A normal status reply with this JSON.
    Json(String),
    /// Accepts and reads the request, then never answers.
    Silent,
    /// Sends these bytes after reading the request, then closes.
    Raw(Vec<u8>),
    /// Sends a frame length and then one byte every 200 ms, forever.
    Drip,
}

pub struct McServer {
    pub addr: SocketAddr,
    /// Well-formed handshakes seen (next state 1, the expected host and port).
    pub handshakes: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Drop for McServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn varint(mut v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

async fn read_varint(s: &mut TcpStream) -> std::io::Result<u32> {
    let mut v = 0u32;
    for i in 0..5 {
        let b = s.read_u8().await?;
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(std::io::Error::other("varint too long"))
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = read_varint(s).await?;
    assert!(len < 1024, "a client frame of {len} bytes");
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}

/// The status response frame for `json`.
pub fn mc_response(json: &str) -> Vec<u8> {
    let mut data = vec![0x00]; // packet id: status response
    data.extend(varint(json.len() as u32));
    data.extend_from_slice(json.as_bytes());
    let mut out = varint(data.len() as u32);
    out.extend(data);
    out
}

/// Reads and checks the handshake and the status request; true when both are well formed.
async fn read_request(s: &mut TcpStream, port: u16) -> bool {
    let Ok(hs) = read_frame(s).await else {
        return false;
    };
    // id 0, VarInt protocol version, String host, u16 port, VarInt next state.
    let mut i = 0;
    let mut next = |hs: &[u8]| -> u32 {
        let mut v = 0u32;
        for k in 0..5 {
            let b = hs[i];
            i += 1;
            v |= u32::from(b & 0x7f) << (7 * k);
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    };
    let id = next(&hs);
    let _version = next(&hs);
    let host_len = next(&hs) as usize;
    let host = String::from_utf8(hs[i..i + host_len].to_vec()).unwrap();
    i += host_len;
    let got_port = u16::from_be_bytes([hs[i], hs[i + 1]]);
    let state = hs[i + 2];
    let Ok(status) = read_frame(s).await else {
        return false;
    };
    id == 0
        && host == "127.0.0.1"
        && got_port == port
        && state == 1
        && i + 3 == hs.len()
        && status == [0x00]
}

pub async fn mc_server(mode: McMode) -> McServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicU32::new(0));
    let seen = handshakes.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mode = mode.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if read_request(&mut s, addr.port()).await {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                match mode {
                    McMode::Json(json) => {
                        let _ = s.write_all(&mc_response(&json)).await;
                    }
                    McMode::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
                    McMode::Raw(bytes) => {
                        let _ = s.write_all(&bytes).await;
                    }
                    McMode::Drip => {
                        let _ = s.write_all(&varint(1000)).await;
                        for _ in 0..300 {
                            if s.write_all(b"{").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
    });
    McServer {
        addr,
        handshakes,
        task,
    }
}
