//! Bench-only baseline: counts inbound UDP packets to one port range by reading every packet
//! of the interface into user space through a pnet datalink channel, the way the agent
//! deliberately does not.
//!
//! `bench_naive_counter IFACE udp:N[-M] SECONDS` prints `{"counted": N}`. Outgoing frames are
//! told apart by their source MAC (pnet does not expose the packet type).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use container_manager_agent::config::{PortSpec, Protocol};
use pnet_datalink::Channel;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, iface, spec, seconds] = args.as_slice() else {
        eprintln!("usage: bench_naive_counter IFACE udp:N[-M] SECONDS");
        std::process::exit(2);
    };
    let spec: PortSpec = spec.parse().expect("a port spec");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| &i.name == iface)
        .expect("no such interface");
    let own_mac = interface.mac.map(|m| m.octets());
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let Ok(Channel::Ethernet(_tx, mut rx)) = pnet_datalink::channel(&interface, config) else {
        eprintln!("cannot open a datalink channel on {iface}");
        std::process::exit(1);
    };
    let start = Instant::now();
    let mut counted = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let Ok(frame) = rx.next() else { continue };
        if frame.len() < 14 || Some(<[u8; 6]>::try_from(&frame[6..12]).unwrap()) == own_mac {
            continue;
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let ip = &frame[14..];
        let (proto, l4) = match ethertype {
            0x0800 if ip.len() >= 20 => {
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
                if frag != 0 {
                    continue;
                }
                (ip[9], ip.get(usize::from(ip[0] & 0xf) * 4..))
            }
            0x86dd if ip.len() >= 40 => (ip[6], ip.get(40..)),
            _ => continue,
        };
        let Some(l4) = l4.filter(|l| l.len() >= 4) else {
            continue;
        };
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        let protocol = match proto {
            17 => Protocol::Udp,
            6 => Protocol::Tcp,
            _ => continue,
        };
        if spec.matches(protocol, dport) {
            counted += 1;
        }
    }
    println!("{{\"counted\": {counted}}}");
}
