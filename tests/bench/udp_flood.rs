//! Bench-only sender: UDP datagrams to one address at a paced rate, bounded by count and time.
//!
//! `bench_udp_flood TARGET RATE_PPS SECONDS [THREADS]` prints `{"sent": N, "seconds": S}`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]
// A bench program pacing itself against the wall clock, not part of the agent.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Sends up to `rate * seconds` datagrams at `rate` per second, stopping at `seconds`.
fn send(target: SocketAddr, rate: u64, seconds: u64) -> u64 {
    let limit = rate * seconds;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).expect("bind");
    // Connected: no route lookup per datagram.
    socket.connect(target).expect("connect");
    let payload = [0x5au8; 32];
    let start = Instant::now();
    let end = Duration::from_secs(seconds);
    let mut sent = 0u64;
    while sent < limit && start.elapsed() < end {
        // Send a batch, then wait until the schedule catches up.
        for _ in 0..256 {
            if sent == limit {
                break;
            }
            if socket.send(&payload).is_ok() {
                sent += 1;
            }
        }
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    sent
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (target, rate, seconds, threads) = match args.as_slice() {
        [_, t, r, s] => (t, r, s, "1"),
        [_, t, r, s, n] => (t, r, s, n.as_str()),
        _ => {
            eprintln!("usage: bench_udp_flood TARGET RATE_PPS SECONDS [THREADS]");
            std::process::exit(2);
        }
    };
    let target: SocketAddr = target.parse().expect("TARGET is ip:port");
    let rate: u64 = rate.parse().expect("RATE_PPS is a number");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let threads: u64 = threads
        .parse::<u64>()
        .expect("THREADS is a number")
        .clamp(1, 16);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || send(target, rate / threads, seconds)))
        .collect();
    let sent: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    println!(
        "{{\"sent\": {sent}, \"seconds\": {:.3}}}",
        start.elapsed().as_secs_f64()
    );
}
