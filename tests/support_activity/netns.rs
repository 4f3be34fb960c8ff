//! A test network: a network namespace joined to this host by a veth pair.
//!
//! Names start with `cmact`; test `id` n uses 10.203.0.16n/28 and fd00:cafe::n:0/112, so tests
//! running in parallel never share a route. Neighbour entries are static (no ARP or neighbour
//! discovery races) and IPv6 addresses skip duplicate address detection (`nodad`).
//! Everything is removed on drop, also when the test failed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

/// Runs `ip` with `args`; panics with its output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` and ignores failure (for cleanup).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

#[derive(Debug)]
pub struct TestNet {
    pub id: u8,
    pub ns: String,
    /// The host side of the veth pair: where the counter counts.
    pub host_if: String,
    pub ns_if: String,
    pub host_v4: Ipv4Addr,
    pub ns_v4: Ipv4Addr,
    pub host_v6: Ipv6Addr,
    pub ns_v6: Ipv6Addr,
}

impl TestNet {
    /// Creates the namespace and the veth pair for test `id` (1 to 14).
    pub fn new(id: u8) -> Self {
        assert!((1..=14).contains(&id));
        let net = Self {
            id,
            ns: format!("cmactns{id}"),
            host_if: format!("cmact{id}h"),
            ns_if: format!("cmact{id}n"),
            host_v4: Ipv4Addr::new(10, 203, 0, 16 * id + 1),
            ns_v4: Ipv4Addr::new(10, 203, 0, 16 * id + 2),
            host_v6: Ipv6Addr::new(0xfd00, 0xcafe, 0, 0, 0, 0, u16::from(id), 1),
            ns_v6: Ipv6Addr::new(0xfd00, 0xcafe, 0, 0, 0, 0, u16::from(id), 2),
        };
        // Leftovers of an earlier, killed run.
        net.remove();
        ip(&["netns", "add", &net.ns]);
        net.create_link();
        net
    }

    fn mac(&self, side: u8) -> String {
        format!("02:00:cb:00:{:02x}:{side:02x}", self.id)
    }

    /// (Re)creates the veth pair with its addresses; the namespace must exist.
    pub fn create_link(&self) {
        let (hm, nm) = (self.mac(1), self.mac(2));
        ip(&[
            "link",
            "add",
            &self.host_if,
            "address",
            &hm,
            "type",
            "veth",
            "peer",
            "name",
            &self.ns_if,
            "address",
            &nm,
            "netns",
            &self.ns,
        ]);
        let (h4, n4) = (format!("{}/28", self.host_v4), format!("{}/28", self.ns_v4));
        let (h6, n6) = (
            format!("{}/112", self.host_v6),
            format!("{}/112", self.ns_v6),
        );
        ip(&["addr", "add", &h4, "dev", &self.host_if]);
        ip(&["-6", "addr", "add", &h6, "dev", &self.host_if, "nodad"]);
        ip(&["link", "set", &self.host_if, "up"]);
        let n = ["-n", self.ns.as_str()];
        ip(&[&n[..], &["link", "set", "lo", "up"]].concat());
        ip(&[&n[..], &["addr", "add", &n4, "dev", &self.ns_if]].concat());
        ip(&[
            &n[..],
            &["-6", "addr", "add", &n6, "dev", &self.ns_if, "nodad"],
        ]
        .concat());
        ip(&[&n[..], &["link", "set", &self.ns_if, "up"]].concat());
        let (ns4, ns6, hs4, hs6) = (
            self.ns_v4.to_string(),
            self.ns_v6.to_string(),
            self.host_v4.to_string(),
            self.host_v6.to_string(),
        );
        for a in [&ns4, &ns6] {
            ip(&[
                "neigh",
                "replace",
                a,
                "lladdr",
                &nm,
                "dev",
                &self.host_if,
                "nud",
                "permanent",
            ]);
        }
        for a in [&hs4, &hs6] {
            ip(&[
                &n[..],
                &[
                    "neigh",
                    "replace",
                    a,
                    "lladdr",
                    &hm,
                    "dev",
                    &self.ns_if,
                    "nud",
                    "permanent",
                ],
            ]
            .concat());
        }
    }

    /// Deletes the veth pair (both ends go).
    pub fn delete_link(&self) {
        ip(&["link", "del", &self.host_if]);
    }

    fn remove(&self) {
        ip_quiet(&["link", "del", &self.host_if]);
        ip_quiet(&["netns", "del", &self.ns]);
    }

    /// The address of the host side, as seen from the namespace.
    pub fn host(&self, v6: bool) -> IpAddr {
        if v6 {
            self.host_v6.into()
        } else {
            self.host_v4.into()
        }
    }

    /// Sends `plan` from inside the namespace (see [`super::sender`]) and waits for it.
    pub fn send_from_ns(&self, plan: &[super::sender::Step]) {
        let exe = std::env::current_exe().expect("test binary path");
        let plan = super::sender::encode(plan);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(exe)
            .args([
                "--exact",
                "netns_sender",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(super::sender::PLAN_ENV, &plan)
            .output()
            .expect("run the sender in the namespace");
        assert!(
            out.status.success(),
            "sender failed for plan {plan}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The veth delivers in the sender's context; leave a moment for the last softirq.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove();
    }
}
