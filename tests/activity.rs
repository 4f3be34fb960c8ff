//! Integration tests: activity (see docs/design.md).
//!
//! The counter tests send real packets across a network namespace and a veth pair (they need
//! root), and check exact counts. The probe tests run test game servers on localhost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// These tests measure real sockets in real time; a paused tokio clock does not apply.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "support_activity/game_servers.rs"]
mod game_servers;
#[path = "support_activity/netns.rs"]
mod netns;
#[path = "support_activity/sender.rs"]
mod sender;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use container_manager_agent::activity::packet::{Backoff, KernelCounter};
use container_manager_agent::activity::{
    CounterError, PacketCounter, PlayerCount, ProbeError, query,
};
use container_manager_agent::config::{InterfaceChoice, PortSpec, ProbeKind};
use game_servers::{
    A2sMode, McMode, a2s_info, a2s_info_with_bots, a2s_server, mc_response, mc_server, varint,
};
use netns::TestNet;
use sender::Step;

const BIN: &str = env!("CARGO_BIN_EXE_container-manager-agent");

/// Runs the traffic plan handed over by [`TestNet::send_from_ns`]; not a test on its own.
#[test]
#[ignore = "helper: run inside a test namespace by the counter tests"]
fn netns_sender() {
    let plan = std::env::var(sender::PLAN_ENV).expect("run by TestNet::send_from_ns with a plan");
    sender::run(&sender::decode(&plan));
}

fn specs(list: &[&str]) -> Vec<PortSpec> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn udp(net: &TestNet, v6: bool, port: u16, count: u32) -> Step {
    Step::Udp {
        to: SocketAddr::new(net.host(v6), port),
        count,
        size: 32,
    }
}

fn counter(net: &TestNet, ports: &[&str], backoff: Backoff) -> KernelCounter {
    KernelCounter::open(
        InterfaceChoice::Named(net.host_if.clone()),
        specs(ports),
        backoff,
    )
    .unwrap()
}

#[test]
fn counts_exactly_the_inbound_packets_to_configured_ports() {
    let net = TestNet::new(1);
    let mut c = counter(
        &net,
        &["udp:2456-2458", "tcp:25565", "udp:27015"],
        Backoff::default(),
    );
    assert_eq!(c.interface(), Some(net.host_if.as_str()));
    assert_eq!(c.take().unwrap(), vec![0, 0, 0], "nothing was sent yet");

    let tcp = |v6, port, count| Step::TcpSyn {
        to: SocketAddr::new(net.host(v6), port),
        count,
    };
    net.send_from_ns(&[
        // Counted: 7 + 5 + 3 to the range, 6 to 27015.
        udp(&net, false, 2456, 7),
        udp(&net, false, 2457, 5),
        udp(&net, false, 2458, 3),
        udp(&net, false, 27015, 6),
        // Just outside the ranges, and TCP to a UDP port: not counted.
        udp(&net, false, 2455, 4),
        udp(&net, false, 2459, 4),
        udp(&net, false, 27016, 3),
        tcp(false, 2456, 2),
        // 3 SYNs to the TCP port (each refused by a reset: one inbound packet each).
        tcp(false, 25565, 3),
        // 3000 bytes: three IPv4 fragments, of which only the first carries the port.
        Step::Udp {
            to: SocketAddr::new(net.host(false), 2456),
            count: 1,
            size: 3000,
        },
        // IPv6: 4 to the range, 2 to 27015, 2 SYNs; 3 elsewhere.
        udp(&net, true, 2457, 4),
        udp(&net, true, 27015, 2),
        tcp(true, 25565, 2),
        udp(&net, true, 3000, 3),
        // ICMP echo in both families: not counted.
        Step::Ping {
            to: net.host(false),
            count: 3,
        },
        Step::Ping {
            to: net.host(true),
            count: 3,
        },
    ]);

    // This host sending outward, to the same port numbers: not counted.
    let out4 = UdpSocket::bind("0.0.0.0:0").unwrap();
    let out6 = UdpSocket::bind("[::]:0").unwrap();
    for _ in 0..10 {
        out4.send_to(b"out", (net.ns_v4, 2456)).unwrap();
        out6.send_to(b"out", (net.ns_v6, 27015)).unwrap();
    }
    for _ in 0..2 {
        let r = TcpStream::connect_timeout(
            &SocketAddr::new(net.ns_v4.into(), 25565),
            Duration::from_secs(2),
        );
        assert!(r.is_err(), "nothing listens in the namespace");
    }
    std::thread::sleep(Duration::from_millis(100));

    assert_eq!(c.take().unwrap(), vec![7 + 5 + 3 + 1 + 4, 3 + 2, 6 + 2]);
    // Statistics reset on every read.
    assert_eq!(c.take().unwrap(), vec![0, 0, 0]);
}

#[test]
fn interface_that_vanishes_is_unknown_then_counted_again() {
    let net = TestNet::new(2);
    let backoff = Backoff {
        initial: Duration::from_millis(300),
        max: Duration::from_secs(2),
    };
    let mut c = counter(&net, &["udp:2456"], backoff);
    net.send_from_ns(&[udp(&net, false, 2456, 5)]);
    assert_eq!(c.take().unwrap(), vec![5]);

    // Gone: unknown, never zero, and no reopen before the backoff.
    net.delete_link();
    match c.take() {
        Err(CounterError::Interface { interface, reason }) => {
            assert_eq!(interface, net.host_if);
            assert!(reason.contains("gone"), "{reason}");
        }
        other => panic!("expected the interface to be gone, got {other:?}"),
    }
    assert!(matches!(c.take(), Err(CounterError::Reopening { .. })));
    std::thread::sleep(Duration::from_millis(400));
    // Still gone after the backoff: the attempt fails and the wait grows.
    assert!(matches!(c.take(), Err(CounterError::Interface { .. })));
    assert!(
        matches!(c.take(), Err(CounterError::Reopening { retry_in }) if retry_in > Duration::from_millis(300))
    );

    net.create_link();
    std::thread::sleep(Duration::from_millis(900));
    // The reopen sample itself is unknown: nothing was counted while the interface was away.
    match c.take() {
        Err(CounterError::Interface { reason, .. }) => {
            assert!(reason.contains("resumes"), "{reason}")
        }
        other => panic!("expected the reopen to be reported, got {other:?}"),
    }
    net.send_from_ns(&[udp(&net, false, 2456, 4), udp(&net, true, 2456, 2)]);
    assert_eq!(c.take().unwrap(), vec![6]);

    // Re-created between two samples: the old socket is dead, the counter notices the new
    // index and reopens at once.
    net.delete_link();
    net.create_link();
    match c.take() {
        Err(CounterError::Interface { reason, .. }) => {
            assert!(reason.contains("re-created"), "{reason}")
        }
        other => panic!("expected the re-creation to be noticed, got {other:?}"),
    }
    net.send_from_ns(&[udp(&net, false, 2456, 3)]);
    assert_eq!(c.take().unwrap(), vec![3]);
}

#[test]
fn interface_down_is_unknown() {
    let net = TestNet::new(3);
    let mut c = counter(&net, &["udp:2456"], Backoff::default());
    netns::ip(&["link", "set", &net.host_if, "down"]);
    assert!(matches!(c.take(), Err(CounterError::Interface { .. })));
    assert!(
        matches!(c.take(), Err(CounterError::Interface { .. })),
        "still down"
    );
    netns::ip(&["link", "set", &net.host_if, "up"]);
    // Re-adding the permanent neighbour entries that going down flushed.
    netns::ip(&[
        "neigh",
        "replace",
        &net.ns_v4.to_string(),
        "lladdr",
        "02:00:cb:00:03:02",
        "dev",
        &net.host_if,
        "nud",
        "permanent",
    ]);
    let _ = c.take();
    net.send_from_ns(&[udp(&net, false, 2456, 4)]);
    assert_eq!(c.take().unwrap(), vec![4]);
}

#[test]
fn missing_interface_at_start_is_retried_not_fatal() {
    let mut c = KernelCounter::open(
        InterfaceChoice::Named("cmactnone".into()),
        specs(&["udp:1"]),
        Backoff::default(),
    )
    .unwrap();
    assert_eq!(c.interface(), None);
    assert!(matches!(c.take(), Err(CounterError::Reopening { .. })));
}

#[test]
fn auto_picks_the_default_route_interface() {
    let c =
        KernelCounter::open(InterfaceChoice::Auto, specs(&["udp:1"]), Backoff::default()).unwrap();
    let route = std::fs::read_to_string("/proc/net/route").unwrap();
    let expected = route
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .and_then(|l| l.split_whitespace().next())
        .expect("this machine has an IPv4 default route");
    assert_eq!(c.interface(), Some(expected));
}

// ---------------------------------------------------------------------------------------------
// The `activity` command.
// ---------------------------------------------------------------------------------------------

#[test]
fn activity_command_prints_exact_counts() {
    let net = TestNet::new(4);
    let child = Command::new(BIN)
        .args([
            "activity",
            "--interface",
            &net.host_if,
            "--port",
            "udp:2456-2458",
            "--port",
            "tcp:25565",
        ])
        .args(["--interval", "400ms", "--samples", "8"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    net.send_from_ns(&[
        udp(&net, false, 2457, 9),
        udp(&net, true, 2458, 4),
        udp(&net, false, 2459, 5),
        Step::TcpSyn {
            to: SocketAddr::new(net.host(false), 25565),
            count: 2,
        },
    ]);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{text}");
    let (mut total, mut range, mut tcp) = (0, 0, 0);
    for l in &lines {
        assert_eq!(l["interface"], net.host_if.as_str());
        assert!(l["interval_ms"].as_u64().unwrap() >= 300, "{l}");
        assert!(
            humantime::parse_rfc3339(l["time"].as_str().unwrap()).is_ok(),
            "{l}"
        );
        total += l["packets"].as_u64().unwrap();
        range += l["by_port"]["udp:2456-2458"].as_u64().unwrap();
        tcp += l["by_port"]["tcp:25565"].as_u64().unwrap();
    }
    assert_eq!((total, range, tcp), (15, 13, 2), "{text}");
}

#[test]
fn activity_command_rejects_bad_arguments() {
    let cases: [(&[&str], &str); 5] = [
        (&["--interface", "lo", "--port", "udp:70000"], "--port"),
        (&["--interface", "lo", "--port", "sctp:1"], "--port"),
        (
            &["--interface", "lo", "--port", "udp:1", "--port", "udp:1"],
            "twice",
        ),
        (
            &["--interface", "cmactnothere", "--port", "udp:1"],
            "--interface",
        ),
        (
            &["--interface", "lo", "--port", "udp:1", "--interval", "soon"],
            "--interval",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .arg("activity")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Probes.
// ---------------------------------------------------------------------------------------------

const T: Duration = Duration::from_millis(1500);

async fn probe(kind: ProbeKind, addr: SocketAddr) -> Result<PlayerCount, ProbeError> {
    query(kind, &addr.to_string(), T).await
}

/// A failure must come within the deadline (plus scheduling slack), never after.
async fn timed(kind: ProbeKind, addr: SocketAddr) -> (Result<PlayerCount, ProbeError>, Duration) {
    let start = Instant::now();
    let r = probe(kind, addr).await;
    let took = start.elapsed();
    assert!(took < T + Duration::from_millis(300), "took {took:?}");
    (r, took)
}

fn malformed(r: &Result<PlayerCount, ProbeError>) -> bool {
    matches!(r, Err(ProbeError::Malformed { .. }))
}

#[tokio::test]
async fn a2s_plain_reply() {
    let s = a2s_server(A2sMode::Plain).await;
    let c = probe(ProbeKind::A2s, s.addr).await.unwrap();
    assert_eq!(
        c,
        PlayerCount {
            players: 3,
            bots: 0,
            max_players: 10,
            name: "Plain server".into()
        }
    );
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a2s_answers_the_challenge() {
    let s = a2s_server(A2sMode::Challenge).await;
    let c = probe(ProbeKind::A2s, s.addr).await.unwrap();
    assert_eq!(
        c,
        PlayerCount {
            players: 7,
            bots: 0,
            max_players: 64,
            name: "Challenged server".into()
        }
    );
    assert_eq!(
        s.requests.load(Ordering::SeqCst),
        1,
        "the challenged request came back"
    );
}

#[tokio::test]
async fn a2s_server_full_of_bots_has_no_players() {
    // Six bots and no human, over real UDP: the probe reports 0 players, so the server can idle.
    let s = a2s_server(A2sMode::Raw(a2s_info_with_bots("Bot farm", 6, 16, 6))).await;
    let c = probe(ProbeKind::A2s, s.addr).await.unwrap();
    assert_eq!(
        c,
        PlayerCount {
            players: 0,
            bots: 6,
            max_players: 16,
            name: "Bot farm".into()
        }
    );
    // One human among the bots keeps it awake.
    let s = a2s_server(A2sMode::Raw(a2s_info_with_bots("Bot farm", 7, 16, 6))).await;
    let c = probe(ProbeKind::A2s, s.addr).await.unwrap();
    assert_eq!((c.players, c.bots), (1, 6));
}

#[tokio::test]
async fn a2s_timeout_truncation_and_garbage() {
    let s = a2s_server(A2sMode::Silent).await;
    let (r, took) = timed(ProbeKind::A2s, s.addr).await;
    assert!(matches!(r, Err(ProbeError::Timeout { .. })), "{r:?}");
    assert!(took >= T, "gave up early after {took:?}");

    let full = a2s_info("Cut", 1, 2).len();
    for k in [0, 3, 5, 8, full - 16] {
        let s = a2s_server(A2sMode::Truncated(k)).await;
        let (r, _) = timed(ProbeKind::A2s, s.addr).await;
        assert!(malformed(&r), "cut at {k}: {r:?}");
    }
    for raw in [
        b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        vec![0xFF; 1400],
        b"\xFF\xFF\xFF\xFFA\x01".to_vec(),
    ] {
        let s = a2s_server(A2sMode::Raw(raw.clone())).await;
        let (r, _) = timed(ProbeKind::A2s, s.addr).await;
        assert!(malformed(&r), "{raw:?}: {r:?}");
    }
    let s = a2s_server(A2sMode::EndlessChallenges).await;
    let (r, _) = timed(ProbeKind::A2s, s.addr).await;
    assert!(malformed(&r), "{r:?}");
}

#[tokio::test]
async fn a2s_refused_is_an_io_error() {
    // A port nobody listens on: the ICMP port-unreachable surfaces on the connected socket.
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (r, _) = timed(ProbeKind::A2s, free).await;
    assert!(matches!(r, Err(ProbeError::Io { .. })), "{r:?}");
}

#[tokio::test]
async fn minecraft_plain_and_chat_descriptions() {
    let json = r#"{"version":{"name":"1.21.1","protocol":767},"players":{"max":20,"online":4,"sample":[{"name":"alex","id":"4566e69f-c907-48ee-8d71-d7ba5aa00d20"}]},"description":"A §lMinecraft§r Server","favicon":"data:image/png;base64,AAAA","enforcesSecureChat":false}"#;
    let s = mc_server(McMode::Json(json.into())).await;
    let c = probe(ProbeKind::Minecraft, s.addr).await.unwrap();
    assert_eq!(
        c,
        PlayerCount {
            players: 4,
            bots: 0,
            max_players: 20,
            name: "A Minecraft Server".into()
        }
    );
    assert_eq!(
        s.handshakes.load(Ordering::SeqCst),
        1,
        "the handshake was well formed"
    );

    let chat = r#"{"players":{"max":8,"online":0},"description":{"text":"Hello ","extra":[{"text":"world","color":"gold"}]}}"#;
    let s = mc_server(McMode::Json(chat.into())).await;
    let c = probe(ProbeKind::Minecraft, s.addr).await.unwrap();
    assert_eq!(
        c,
        PlayerCount {
            players: 0,
            bots: 0,
            max_players: 8,
            name: "Hello world".into()
        }
    );
}

#[tokio::test]
async fn minecraft_timeouts_truncation_garbage_and_absurd_lengths() {
    for mode in [McMode::Silent, McMode::Drip] {
        let s = mc_server(mode.clone()).await;
        let (r, took) = timed(ProbeKind::Minecraft, s.addr).await;
        assert!(
            matches!(r, Err(ProbeError::Timeout { .. })),
            "{mode:?}: {r:?}"
        );
        assert!(took >= T, "{mode:?}: gave up early after {took:?}");
    }
    let good = mc_response(r#"{"players":{"max":1,"online":1}}"#);
    let mut absurd = varint(u32::MAX >> 1); // a 2 GiB frame
    absurd.extend_from_slice(b"{}");
    let mut too_long_varint = vec![0xFF; 6];
    too_long_varint.push(0);
    let mut wrong_id = varint(3);
    wrong_id.extend_from_slice(&[0x01, 0x01, b'{']);
    let mut string_past_frame = varint(4);
    string_past_frame.extend_from_slice(&[0x00, 0xFF, 0xFF, 0x03]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 5].to_vec()),
        ("nothing", Vec::new()),
        ("absurd length", absurd),
        ("varint too long", too_long_varint),
        ("wrong packet id", wrong_id),
        ("string past the frame", string_past_frame),
        ("not json", mc_response("<html>")),
        (
            "negative players",
            mc_response(r#"{"players":{"max":1,"online":-1}}"#),
        ),
        ("garbage", b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let s = mc_server(McMode::Raw(bytes)).await;
        let (r, _) = timed(ProbeKind::Minecraft, s.addr).await;
        assert!(malformed(&r), "{what}: {r:?}");
    }
    let closed =
        TcpStream::connect_timeout(&"127.0.0.1:9".parse().unwrap(), Duration::from_millis(100));
    assert!(closed.is_err(), "port 9 is expected to be closed here");
    let (r, _) = timed(ProbeKind::Minecraft, "127.0.0.1:9".parse().unwrap()).await;
    assert!(matches!(r, Err(ProbeError::Io { .. })), "{r:?}");
}

#[tokio::test]
async fn probe_command_prints_json_and_fails_clearly() {
    let s = a2s_server(A2sMode::Challenge).await;
    let out = tokio::process::Command::new(BIN)
        .args(["probe", "a2s", &s.addr.to_string(), "--timeout", "2s"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"players": 7, "bots": 0, "max_players": 64, "name": "Challenged server"})
    );

    let m = mc_server(McMode::Json(
        r#"{"players":{"max":5,"online":2},"description":"mc"}"#.into(),
    ))
    .await;
    let out = tokio::process::Command::new(BIN)
        .args(["probe", "minecraft", &m.addr.to_string()])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"players": 2, "bots": 0, "max_players": 5, "name": "mc"})
    );

    let silent = a2s_server(A2sMode::Silent).await;
    let start = Instant::now();
    let out = tokio::process::Command::new(BIN)
        .args([
            "probe",
            "a2s",
            &silent.addr.to_string(),
            "--timeout",
            "700ms",
        ])
        .output()
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no reply") && err.contains(&silent.addr.to_string()),
        "{err}"
    );

    for (args, needle) in [
        (vec!["probe", "quake", "127.0.0.1:1"], "KIND"),
        (vec!["probe", "a2s", "nohost"], "ADDRESS"),
        (
            vec!["probe", "a2s", "127.0.0.1:1", "--timeout", "0s"],
            "--timeout",
        ),
    ] {
        let out = tokio::process::Command::new(BIN)
            .args(&args)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}"
        );
    }
}
