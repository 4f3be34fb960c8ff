//! The classic BPF program that decides, in the kernel, whether a packet counts for one port
//! spec.
//!
//! The program runs on an `AF_PACKET` socket of type `SOCK_DGRAM`, so the data it sees starts
//! at the network header whatever the link layer is (Ethernet, VLAN offload, tunnels). The
//! EtherType and the packet type come from the kernel's ancillary loads
//! (`SKF_AD_OFF + SKF_AD_PROTOCOL` and `SKF_AD_OFF + SKF_AD_PKTTYPE`).
//!
//! A packet is accepted when all of these hold:
//! - it arrived at this host: its packet type is `PACKET_HOST`, `PACKET_BROADCAST` or
//!   `PACKET_MULTICAST`. `PACKET_OUTGOING` (what this host sends) is rejected, and so are
//!   `PACKET_OTHERHOST` (seen only in promiscuous mode) and the loopback/internal types;
//! - it is IPv4 with a sane first byte (version 4, header length 5 to 15 words), the spec's
//!   protocol, and fragment offset 0 (later fragments carry no transport header), or it is
//!   IPv6 whose fixed header's next header is directly the spec's protocol. IPv6 extension
//!   headers are not followed: a packet with e.g. a fragment or hop-by-hop header in front of
//!   UDP is not counted (games do not send those);
//! - its destination port is inside the spec's range.
//!
//! Loads past the end of the packet make the kernel return 0 (reject), so short packets are
//! never counted. The generator is pure and property-tested against a plain Rust predicate by
//! a small interpreter in the tests below.

use crate::config::PortSpec;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Instruction classes and fields (linux/filter.h, linux/bpf_common.h).
pub const BPF_LD: u16 = 0x00;
pub const BPF_LDX: u16 = 0x01;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_B: u16 = 0x10;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_IND: u16 = 0x40;
pub const BPF_MSH: u16 = 0xa0;
pub const BPF_AND: u16 = 0x50;
pub const BPF_JA: u16 = 0x00;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_JSET: u16 = 0x40;
pub const BPF_K: u16 = 0x00;

/// The base of the kernel's ancillary data offsets.
pub const SKF_AD_OFF: u32 = 0xffff_f000;
pub const SKF_AD_PROTOCOL: u32 = 0;
pub const SKF_AD_PKTTYPE: u32 = 4;

/// The highest accepted packet type: `PACKET_MULTICAST`. Above it are `PACKET_OTHERHOST` (3),
/// `PACKET_OUTGOING` (4), `PACKET_LOOPBACK` (5) and the kernel-internal ones.
pub const MAX_INBOUND_PKTTYPE: u32 = 2;

pub const ETH_P_IP: u32 = 0x0800;
pub const ETH_P_IPV6: u32 = 0x86dd;

/// What an accepting program returns: the number of bytes to keep. The socket's receive
/// buffer is tiny and never read, so this only has to be non-zero.
pub const ACCEPT: u32 = 1;

/// Symbolic jump targets, resolved to relative offsets once the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    V6,
    Port,
    Accept,
    Reject,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Stmt(u16, u32),
    Jump(u16, u32, Target, Target),
    Label(Target),
}

/// The filter for one port spec.
pub fn program(spec: &PortSpec) -> Vec<Insn> {
    use Step::{Jump, Label, Stmt};
    use Target::{Accept, Next, Port, Reject, V6};
    let proto = u32::from(spec.protocol.number());
    let mut steps = vec![
        // Arrived at this host?
        Stmt(BPF_LD | BPF_H | BPF_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
        Jump(BPF_JMP | BPF_JGT | BPF_K, MAX_INBOUND_PKTTYPE, Reject, Next),
        Stmt(BPF_LD | BPF_H | BPF_ABS, SKF_AD_OFF + SKF_AD_PROTOCOL),
        Jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, V6, Next),
        Jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, Next, Reject),
        // IPv4: version 4 and a header of 5 to 15 words.
        Stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        Jump(BPF_JMP | BPF_JGE | BPF_K, 0x45, Next, Reject),
        Jump(BPF_JMP | BPF_JGT | BPF_K, 0x4f, Reject, Next),
        Stmt(BPF_LD | BPF_B | BPF_ABS, 9),
        Jump(BPF_JMP | BPF_JEQ | BPF_K, proto, Next, Reject),
        // Only the first fragment carries the ports.
        Stmt(BPF_LD | BPF_H | BPF_ABS, 6),
        Jump(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, Reject, Next),
        Stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
        Stmt(BPF_LD | BPF_H | BPF_IND, 2),
        Jump(BPF_JMP | BPF_JA, 0, Port, Port),
        // IPv6: version 6, next header directly the protocol, ports after the 40-byte header.
        Label(V6),
        Stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        Jump(BPF_JMP | BPF_JGE | BPF_K, 0x60, Next, Reject),
        Jump(BPF_JMP | BPF_JGT | BPF_K, 0x6f, Reject, Next),
        Stmt(BPF_LD | BPF_B | BPF_ABS, 6),
        Jump(BPF_JMP | BPF_JEQ | BPF_K, proto, Next, Reject),
        Stmt(BPF_LD | BPF_H | BPF_ABS, 42),
        Label(Port),
    ];
    if spec.first == spec.last {
        steps.push(Jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            u32::from(spec.first),
            Accept,
            Reject,
        ));
    } else {
        steps.push(Jump(
            BPF_JMP | BPF_JGE | BPF_K,
            u32::from(spec.first),
            Next,
            Reject,
        ));
        steps.push(Jump(
            BPF_JMP | BPF_JGT | BPF_K,
            u32::from(spec.last),
            Reject,
            Accept,
        ));
    }
    steps.push(Label(Accept));
    steps.push(Stmt(BPF_RET | BPF_K, ACCEPT));
    steps.push(Label(Reject));
    steps.push(Stmt(BPF_RET | BPF_K, 0));
    assemble(&steps)
}

/// Lays the steps out and turns labels into relative jump offsets.
fn assemble(steps: &[Step]) -> Vec<Insn> {
    let mut at = Vec::new();
    let mut n = 0usize;
    for s in steps {
        match s {
            Step::Label(t) => at.push((*t, n)),
            _ => n += 1,
        }
    }
    let find = |t: Target, pc: usize| -> u32 {
        let dest = match t {
            Target::Next => pc + 1,
            _ => at.iter().find(|(l, _)| *l == t).map_or(pc + 1, |(_, i)| *i),
        };
        // Every target lies ahead of its jump: the program is a handful of instructions.
        u32::try_from(dest.saturating_sub(pc + 1)).unwrap_or(0)
    };
    let mut out = Vec::with_capacity(n);
    for s in steps {
        match *s {
            Step::Label(_) => {}
            Step::Stmt(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Step::Jump(code, k, jt, jf) => {
                let pc = out.len();
                if code == BPF_JMP | BPF_JA {
                    out.push(Insn {
                        code,
                        jt: 0,
                        jf: 0,
                        k: find(jt, pc),
                    });
                } else {
                    let off = |t| u8::try_from(find(t, pc)).unwrap_or(0);
                    out.push(Insn {
                        code,
                        jt: off(jt),
                        jf: off(jf),
                        k,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use proptest::prelude::*;

    /// A classic BPF interpreter for the instructions the generator may use, following the
    /// kernel's semantics (linux/net/core/filter.c): loads past the end return 0, jumps are
    /// relative to the next instruction. Anything else fails the test.
    fn run(prog: &[Insn], pkt: &[u8], ethertype: u16, pkttype: u32) -> u32 {
        let (mut a, mut x) = (0u32, 0u32);
        let mut pc = 0usize;
        let load = |off: u32, size: usize| -> Option<u32> {
            if off >= SKF_AD_OFF {
                return match off - SKF_AD_OFF {
                    SKF_AD_PROTOCOL => Some(u32::from(ethertype)),
                    SKF_AD_PKTTYPE => Some(pkttype),
                    other => panic!("unexpected ancillary load {other}"),
                };
            }
            let off = usize::try_from(off).ok()?;
            let b = pkt.get(off..off.checked_add(size)?)?;
            Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
        };
        for _ in 0..=prog.len() {
            let i = prog
                .get(pc)
                .copied()
                .expect("ran off the end of the program");
            pc += 1;
            let size = |code: u16| match code & 0x18 {
                BPF_W => 4,
                BPF_H => 2,
                BPF_B => 1,
                _ => panic!("bad size in {code:#x}"),
            };
            match i.code {
                c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_ABS => match load(i.k, size(c)) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_IND => {
                    match load(x.wrapping_add(i.k), size(c)) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == BPF_LDX | BPF_B | BPF_MSH => match load(i.k, 1) {
                    Some(v) => x = (v & 0xf) << 2,
                    None => return 0,
                },
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
                c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
                c if c & 0x07 == BPF_JMP => {
                    let cond = match c & 0xf0 {
                        BPF_JEQ => a == i.k,
                        BPF_JGT => a > i.k,
                        BPF_JGE => a >= i.k,
                        BPF_JSET => a & i.k != 0,
                        _ => panic!("unexpected jump {c:#x}"),
                    };
                    pc += usize::from(if cond { i.jt } else { i.jf });
                }
                c if c == BPF_RET | BPF_K => return i.k,
                c => panic!("unexpected instruction {c:#x}"),
            }
        }
        panic!("the program loops");
    }

    /// The plain statement of what counts, written from the packet formats, not the program.
    fn counts(spec: &PortSpec, pkt: &[u8], ethertype: u16, pkttype: u32) -> bool {
        // PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST.
        if !matches!(pkttype, 0..=2) {
            return false;
        }
        let proto = spec.protocol.number();
        let port_at = |off: usize| {
            pkt.get(off..off + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let dport = match ethertype {
            0x0800 => {
                let Some(&b0) = pkt.first() else { return false };
                let (version, ihl) = (b0 >> 4, usize::from(b0 & 0xf));
                if version != 4 || ihl < 5 || pkt.len() < 20 {
                    return false;
                }
                let frag_offset = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
                if pkt[9] != proto || frag_offset != 0 {
                    return false;
                }
                port_at(ihl * 4 + 2)
            }
            0x86dd => {
                if pkt.len() < 40 || pkt[0] >> 4 != 6 || pkt[6] != proto {
                    return false;
                }
                port_at(42)
            }
            _ => return false,
        };
        dport.is_some_and(|p| spec.matches(spec.protocol, p))
    }

    fn spec(udp: bool, first: u16, last: u16) -> PortSpec {
        PortSpec {
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
            first: first.min(last),
            last: first.max(last),
        }
    }

    /// A packet built from fields; `cut` truncates it.
    #[derive(Debug, Clone)]
    struct Pkt {
        v6: bool,
        ethertype: u16,
        first_byte: u8,
        proto: u8,
        frag: u16,
        options_words: u8,
        dport: u16,
        cut: Option<usize>,
        pkttype: u32,
    }

    impl Pkt {
        fn bytes(&self) -> Vec<u8> {
            let mut p = if self.v6 {
                let mut h = vec![0u8; 40];
                h[0] = self.first_byte;
                h[6] = self.proto;
                h
            } else {
                let mut h = vec![0u8; 20 + 4 * usize::from(self.options_words)];
                h[0] = self.first_byte;
                h[6..8].copy_from_slice(&self.frag.to_be_bytes());
                h[9] = self.proto;
                h
            };
            // Transport header: source port, destination port, then some payload.
            p.extend_from_slice(&40000u16.to_be_bytes());
            p.extend_from_slice(&self.dport.to_be_bytes());
            p.extend_from_slice(&[0u8; 16]);
            if let Some(c) = self.cut {
                p.truncate(c);
            }
            p
        }
    }

    fn pkt_strategy(first: u16, last: u16) -> impl Strategy<Value = Pkt> {
        let port = prop_oneof![
            Just(first),
            Just(last),
            Just(first.wrapping_sub(1)),
            Just(last.wrapping_add(1)),
            first..=last,
            any::<u16>(),
        ];
        (
            any::<bool>(),
            prop_oneof![4 => Just(None), 1 => Just(Some(0x0806u16)), 1 => any::<u16>().prop_map(Some)],
            prop_oneof![6 => Just(None), 1 => any::<u8>().prop_map(Some)],
            prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(58u8), any::<u8>()],
            prop_oneof![3 => Just(0u16), 1 => Just(0x2000u16), 1 => any::<u16>()],
            0u8..=10,
            port,
            prop_oneof![6 => Just(None), 1 => (0usize..90).prop_map(Some)],
            prop_oneof![Just(0u32), Just(4u32), 0u32..8],
        )
            .prop_map(
                |(v6, ethertype, first_byte, proto, frag, options_words, dport, cut, pkttype)| {
                    let default_first = if v6 { 0x60 } else { 0x45 + options_words };
                    Pkt {
                        v6,
                        ethertype: ethertype.unwrap_or(if v6 { 0x86dd } else { 0x0800 }),
                        first_byte: first_byte.unwrap_or(default_first),
                        proto,
                        frag,
                        options_words,
                        dport,
                        cut,
                        pkttype,
                    }
                },
            )
    }

    fn case() -> impl Strategy<Value = (PortSpec, Pkt)> {
        (any::<bool>(), 1u16..=65535, 0u16..64, any::<bool>()).prop_flat_map(
            |(udp, a, width, single)| {
                let last = if single { a } else { a.saturating_add(width) };
                let s = spec(udp, a, last);
                (Just(s), pkt_strategy(s.first, s.last))
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn program_agrees_with_the_predicate((s, p) in case()) {
            let prog = program(&s);
            let bytes = p.bytes();
            let got = run(&prog, &bytes, p.ethertype, p.pkttype) != 0;
            prop_assert_eq!(got, counts(&s, &bytes, p.ethertype, p.pkttype), "spec {} packet {:?}", s, p);
        }

        #[test]
        fn jumps_stay_inside_the_program(udp in any::<bool>(), a in 1u16..=65535, b in 1u16..=65535) {
            let prog = program(&spec(udp, a, b));
            prop_assert!(prog.len() < 64);
            for (pc, i) in prog.iter().enumerate() {
                if i.code & 0x07 == BPF_JMP {
                    let far = if i.code == BPF_JMP | BPF_JA { i.k as usize } else { usize::from(i.jt.max(i.jf)) };
                    prop_assert!(pc + 1 + far < prog.len(), "jump at {} leaves the program", pc);
                }
            }
            prop_assert_eq!(prog.last().map(|i| i.code), Some(BPF_RET | BPF_K));
        }
    }

    fn udp4(dport: u16) -> Vec<u8> {
        Pkt {
            v6: false,
            ethertype: 0x0800,
            first_byte: 0x45,
            proto: 17,
            frag: 0,
            options_words: 0,
            dport,
            cut: None,
            pkttype: 0,
        }
        .bytes()
    }

    #[test]
    fn known_packets() {
        let s = spec(true, 2456, 2458);
        let prog = program(&s);
        assert_eq!(run(&prog, &udp4(2456), 0x0800, 0), ACCEPT);
        assert_eq!(run(&prog, &udp4(2458), 0x0800, 1), ACCEPT);
        assert_eq!(run(&prog, &udp4(2459), 0x0800, 0), 0);
        assert_eq!(run(&prog, &udp4(2455), 0x0800, 0), 0);
        // What this host sends is never counted.
        assert_eq!(run(&prog, &udp4(2456), 0x0800, 4), 0);
        // Same bytes, TCP spec: no.
        assert_eq!(
            run(&program(&spec(false, 2456, 2458)), &udp4(2456), 0x0800, 0),
            0
        );
        // A later fragment (offset 185 * 8) whose payload happens to look like the port.
        let mut frag = udp4(2456);
        frag[6..8].copy_from_slice(&185u16.to_be_bytes());
        assert_eq!(run(&prog, &frag, 0x0800, 0), 0);
        // The first fragment (more-fragments flag only) counts.
        frag[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert_eq!(run(&prog, &frag, 0x0800, 0), ACCEPT);
    }
}
