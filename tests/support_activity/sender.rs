//! Traffic for the counter tests, sent with std sockets (and socket2 for ICMP) by a copy of
//! the test binary running inside the namespace (`ip netns exec ... --exact netns_sender`).
//! Every loop is bounded by its count; every socket call by a timeout.

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

pub const PLAN_ENV: &str = "CMACT_SEND_PLAN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `count` UDP datagrams of `size` payload bytes.
    Udp {
        to: SocketAddr,
        count: u32,
        size: usize,
    },
    /// `count` TCP connection attempts to a closed port: one SYN each, answered by a reset.
    TcpSyn { to: SocketAddr, count: u32 },
    /// `count` ICMP echo requests.
    Ping { to: IpAddr, count: u32 },
}

pub fn encode(plan: &[Step]) -> String {
    plan.iter()
        .map(|s| match s {
            Step::Udp { to, count, size } => format!("udp {to} {count} {size}"),
            Step::TcpSyn { to, count } => format!("tcp {to} {count}"),
            Step::Ping { to, count } => format!("ping {to} {count}"),
        })
        .collect::<Vec<_>>()
        .join(";")
}

pub fn decode(text: &str) -> Vec<Step> {
    text.split(';')
        .map(|s| {
            let f: Vec<&str> = s.split(' ').collect();
            match f[0] {
                "udp" => Step::Udp {
                    to: f[1].parse().unwrap(),
                    count: f[2].parse().unwrap(),
                    size: f[3].parse().unwrap(),
                },
                "tcp" => Step::TcpSyn {
                    to: f[1].parse().unwrap(),
                    count: f[2].parse().unwrap(),
                },
                "ping" => Step::Ping {
                    to: f[1].parse().unwrap(),
                    count: f[2].parse().unwrap(),
                },
                other => panic!("unknown step {other}"),
            }
        })
        .collect()
}

/// Sends the plan from the current network namespace.
pub fn run(plan: &[Step]) {
    for step in plan {
        match *step {
            Step::Udp { to, count, size } => {
                let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let s = UdpSocket::bind(local).unwrap();
                let payload = vec![0x5a; size];
                for _ in 0..count {
                    assert_eq!(s.send_to(&payload, to).unwrap(), size);
                }
            }
            Step::TcpSyn { to, count } => {
                for _ in 0..count {
                    let r = TcpStream::connect_timeout(&to, Duration::from_secs(2));
                    let e = r.expect_err("nothing listens there, so the SYN must be refused");
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                }
            }
            Step::Ping { to, count } => ping(to, count),
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ping(to: IpAddr, count: u32) {
    let (domain, proto, echo) = match to {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let s = Socket::new(domain, Type::RAW, Some(proto)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    for seq in 0..count {
        let mut msg = vec![echo, 0, 0, 0, 0x12, 0x34, 0, seq as u8, 1, 2, 3, 4];
        if to.is_ipv4() {
            // The kernel fills in the ICMPv6 checksum itself, not the ICMPv4 one.
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
        }
        s.send_to(&msg, &SocketAddr::new(to, 0).into()).unwrap();
    }
}
