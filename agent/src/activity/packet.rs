//! The kernel packet counter: one `AF_PACKET` socket per port spec, each with the classic BPF
//! filter from [`super::bpf`], read only through `PACKET_STATISTICS`.
//!
//! This module and [`super::iface`] are the only ones with `unsafe` code: the socket calls libc
//! offers and std does not. Every block says why it is sound.
//!
//! How counting works: the socket is `SOCK_DGRAM` (the filter sees the network header at
//! offset 0), bound to one interface for every protocol (`ETH_P_ALL`), with the smallest
//! receive buffer the kernel allows. It is never read. The kernel runs the filter on every
//! packet of the interface; what passes is queued until the tiny buffer is full and dropped
//! after that, and `getsockopt(PACKET_STATISTICS)` returns queued plus dropped (everything that
//! passed) and resets both. No packet is ever copied to user space.
//!
//! Interfaces come and go. Each [`KernelCounter::take`] checks that the interface still has the
//! index the sockets were bound to. When it is gone or was re-created, the sample is an error
//! ("unknown", never zero) and the counter reopens with capped exponential backoff.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::bpf::{self, Insn};
use super::counter::{CounterError, PacketCounter};
pub use super::iface::interface_index;
use super::route;
use crate::config::{InterfaceChoice, PortSpec};

/// How the counter waits between reopen attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// One counting socket: a packet socket with a filter, never read.
#[derive(Debug)]
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    fn open(ifindex: u32, program: &[Insn]) -> io::Result<Self> {
        // Protocol 0: the socket receives nothing until it is bound, so no packet from another
        // interface or before the filter is attached is ever seen.
        // SAFETY: socket() takes no pointers; a negative result is handled below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor that was just created and that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // The kernel raises this to its minimum (a few KiB): a handful of queued packets.
        set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &1 as &libc::c_int)?;
        let mut filter: Vec<libc::sock_filter> = program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let len = u16::try_from(filter.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?;
        let fprog = libc::sock_fprog {
            len,
            filter: filter.as_mut_ptr(),
        };
        // The kernel copies the program during the call, so `filter` only has to outlive it.
        set_option(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        let ifindex = libc::c_int::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?;
        // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll that lives across the call, and the length
        // passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Packets that passed the filter since the last call (queued plus dropped); resets.
    fn take(&self) -> io::Result<u64> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        get_option(
            &self.fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats,
        )?;
        // The kernel already adds the drops into tp_packets.
        Ok(u64::from(stats.tp_packets))
    }

    /// The pending socket error, if any (`ENETDOWN` after the interface went down); clears it.
    fn pending_error(&self) -> io::Result<Option<io::Error>> {
        let mut err: libc::c_int = 0;
        get_option(&self.fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut err)?;
        Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
    }
}

fn socklen<T>() -> libc::socklen_t {
    // Every type passed here is a small C struct or int.
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

fn set_option<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised T for the duration of the call and the
    // length passed is exactly its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            socklen::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn get_option<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<()> {
    let mut len = socklen::<T>();
    // SAFETY: `value` is a live, exclusively borrowed T and `len` is its size, so the kernel
    // writes at most that many bytes into it; T is plain old data for every caller.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(value).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An `ifreq` naming `name`, everything else zero.
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// The interface's current index asked through `fd`, or `None` when there is no such
/// interface. This runs on every sample: `if_nametoindex` would open and close a socket each
/// time, and the socket's teardown costs more than the rest of the sample.
fn index_via(fd: &OwnedFd, name: &str) -> io::Result<Option<u32>> {
    let mut req = ifreq_for(name)?;
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (the rest is zero); for
    // SIOCGIFINDEX the kernel writes only the index member of the union inside it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &raw mut req) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODEV) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: after a successful SIOCGIFINDEX the index member is the initialised one.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    Ok(u32::try_from(index).ok().filter(|&i| i != 0))
}

/// Whether the interface is administratively up (`IFF_UP`), asked through `fd`.
fn is_up(fd: &OwnedFd, name: &str) -> io::Result<bool> {
    let mut req = ifreq_for(name)?;
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (the rest is zero); for
    // SIOCGIFFLAGS the kernel writes only the flags member of the union inside it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFFLAGS the flags member is the initialised one.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags & (libc::IFF_UP as libc::c_short) != 0)
}

#[derive(Debug)]
enum State {
    Open {
        interface: String,
        ifindex: u32,
        sockets: Vec<PacketSocket>,
    },
    Closed {
        next_try: Instant,
        delay: Duration,
    },
}

/// Counts inbound packets per port spec in the kernel. See the module docs.
#[derive(Debug)]
pub struct KernelCounter {
    choice: InterfaceChoice,
    specs: Vec<PortSpec>,
    programs: Vec<Vec<Insn>>,
    backoff: Backoff,
    state: State,
}

impl KernelCounter {
    /// Opens the counter. A missing interface (or no default route yet, for `auto`) is not an
    /// error here: the counter starts closed and keeps trying, and its samples are unknown
    /// until it opens. Socket errors (no permission, no `AF_PACKET`) are returned.
    pub fn open(
        choice: InterfaceChoice,
        specs: Vec<PortSpec>,
        backoff: Backoff,
    ) -> Result<Self, CounterError> {
        let programs = specs.iter().map(bpf::program).collect();
        let mut counter = Self {
            choice,
            specs,
            programs,
            backoff,
            state: State::Closed {
                next_try: Instant::now(),
                delay: backoff.initial,
            },
        };
        match counter.try_open() {
            Ok(state) => counter.state = state,
            Err(e @ CounterError::Socket { .. }) => return Err(e),
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff.initial, "Cannot count packets yet; will retry.");
                counter.state = State::Closed {
                    next_try: Instant::now() + backoff.initial,
                    delay: backoff.initial,
                };
            }
        }
        Ok(counter)
    }

    /// The interface being counted, if the counter is open.
    pub fn interface(&self) -> Option<&str> {
        match &self.state {
            State::Open { interface, .. } => Some(interface),
            State::Closed { .. } => None,
        }
    }

    fn resolve(&self) -> Result<String, CounterError> {
        match &self.choice {
            InterfaceChoice::Named(n) => Ok(n.clone()),
            InterfaceChoice::Auto => {
                route::default_interface().map_err(|e| CounterError::Interface {
                    interface: "auto".into(),
                    reason: e.to_string(),
                })
            }
        }
    }

    fn try_open(&self) -> Result<State, CounterError> {
        let interface = self.resolve()?;
        let Some(ifindex) = interface_index(&interface) else {
            return Err(CounterError::Interface {
                interface,
                reason: "no such interface".into(),
            });
        };
        let mut sockets = Vec::with_capacity(self.specs.len());
        for (spec, program) in self.specs.iter().zip(&self.programs) {
            let socket = PacketSocket::open(ifindex, program).map_err(|source| {
                // The interface vanished between the lookup and the bind.
                if source.raw_os_error() == Some(libc::ENODEV) {
                    CounterError::Interface {
                        interface: interface.clone(),
                        reason: "no such interface".into(),
                    }
                } else {
                    CounterError::Socket {
                        spec: spec.to_string(),
                        source,
                    }
                }
            })?;
            sockets.push(socket);
        }
        Ok(State::Open {
            interface,
            ifindex,
            sockets,
        })
    }

    /// Closes the sockets and schedules a reopen.
    fn close(&mut self, delay: Duration) {
        self.state = State::Closed {
            next_try: Instant::now() + delay,
            delay,
        };
    }

    /// Tries to open again now. Success is still an unknown sample: nothing was counted
    /// between the failure and now.
    fn reopen(&mut self, why: &str) -> CounterError {
        let delay = match &self.state {
            State::Closed { delay, .. } => *delay,
            State::Open { .. } => self.backoff.initial,
        };
        match self.try_open() {
            Ok(state) => {
                self.state = state;
                let interface = self.interface().unwrap_or_default().to_string();
                info!(interface = %interface, why, "Packet counter reopened.");
                CounterError::Interface {
                    interface,
                    reason: format!("{why}; counting resumes from now"),
                }
            }
            Err(e) => {
                let wait = (delay * 2).min(self.backoff.max);
                warn!(error = %e, retry_in = ?wait, "Cannot reopen the packet counter; will retry.");
                self.close(wait);
                e
            }
        }
    }
}

impl PacketCounter for KernelCounter {
    fn take(&mut self) -> Result<Vec<u64>, CounterError> {
        let (interface, ifindex) = match &self.state {
            State::Closed { next_try, .. } => {
                let now = Instant::now();
                if now < *next_try {
                    return Err(CounterError::Reopening {
                        retry_in: next_try.saturating_duration_since(now),
                    });
                }
                return Err(self.reopen("the interface is back"));
            }
            State::Open {
                interface, ifindex, ..
            } => (interface.clone(), *ifindex),
        };

        // For "auto", follow the default route when it moves to another interface.
        if self.choice == InterfaceChoice::Auto
            && let Ok(now_default) = route::default_route_interface()
            && now_default != interface
        {
            warn!(from = %interface, to = %now_default, "The default route moved; counting on the new interface.");
            return Err(self.reopen("the default route moved"));
        }

        let State::Open { sockets, .. } = &self.state else {
            return Err(CounterError::Reopening {
                retry_in: Duration::ZERO,
            });
        };
        // The first socket answers for the interface; the specs are never empty.
        let index = match sockets.first() {
            Some(s) => index_via(&s.fd, &interface),
            None => Ok(interface_index(&interface)),
        };
        match index {
            Err(source) => {
                let e = CounterError::Interface {
                    interface,
                    reason: format!("cannot read the interface's index: {source}"),
                };
                warn!(error = %e, "Cannot check the interface; reopening.");
                self.close(self.backoff.initial);
                return Err(e);
            }
            Ok(None) => {
                warn!(interface = %interface, retry_in = ?self.backoff.initial, "Interface is gone; packets are unknown until it is back.");
                self.close(self.backoff.initial);
                return Err(CounterError::Interface {
                    interface,
                    reason: "the interface is gone".into(),
                });
            }
            Ok(Some(index)) if index != ifindex => {
                warn!(interface = %interface, old_index = ifindex, new_index = index, "Interface was re-created; reopening.");
                return Err(self.reopen("the interface was re-created"));
            }
            Ok(Some(_)) => {}
        }

        let State::Open { sockets, .. } = &self.state else {
            return Err(CounterError::Reopening {
                retry_in: Duration::ZERO,
            });
        };
        let up = sockets
            .first()
            .map_or(Ok(true), |s| is_up(&s.fd, &interface));
        let mut counts = Vec::with_capacity(sockets.len());
        let mut went_down = None;
        for (socket, spec) in sockets.iter().zip(&self.specs) {
            let read = socket.take().and_then(|n| Ok((n, socket.pending_error()?)));
            match read {
                Ok((n, err)) => {
                    counts.push(n);
                    went_down = went_down.or(err);
                }
                Err(source) => {
                    let e = CounterError::Socket {
                        spec: spec.to_string(),
                        source,
                    };
                    warn!(error = %e, "Reading the packet counter failed; reopening.");
                    self.close(self.backoff.initial);
                    return Err(e);
                }
            }
        }
        // While the interface is down the kernel unhooks the sockets; it hooks them again when
        // it comes back up. A sample that spans a down period is unknown.
        if let Some(err) = went_down {
            warn!(interface = %interface, error = %err, "Interface went down during the sample.");
            return Err(CounterError::Interface {
                interface,
                reason: format!("the interface went down during the sample ({err})"),
            });
        }
        match up {
            Ok(true) => {}
            Ok(false) => {
                return Err(CounterError::Interface {
                    interface,
                    reason: "the interface is down".into(),
                });
            }
            Err(e) => {
                return Err(CounterError::Interface {
                    interface,
                    reason: format!("cannot read the interface's state: {e}"),
                });
            }
        }
        Ok(counts)
    }
}
