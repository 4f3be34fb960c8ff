//! Which interface `activity.interface = "auto"` means: the one the default route leaves by.
//!
//! The IPv4 table (`/proc/net/route`) is asked first, then the IPv6 one
//! (`/proc/net/ipv6_route`); among several default routes the lowest metric wins. The name
//! found must also be an interface the kernel knows.

use std::path::Path;

/// Why no interface could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no default route (looked in /proc/net/route and /proc/net/ipv6_route)")]
    NoDefaultRoute,
    #[error("the default route uses {0:?}, which is not in the interface list")]
    Missing(String),
}

const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// The interface of the default route, from the running system.
pub fn default_interface() -> Result<String, RouteError> {
    let name = default_interface_in(
        Path::new("/proc/net/route"),
        Path::new("/proc/net/ipv6_route"),
    )?;
    if super::iface::interface_index(&name).is_some() {
        Ok(name)
    } else {
        Err(RouteError::Missing(name))
    }
}

/// The default route's interface from the routing tables alone (cheap enough for every sample).
pub fn default_route_interface() -> Result<String, RouteError> {
    default_interface_in(
        Path::new("/proc/net/route"),
        Path::new("/proc/net/ipv6_route"),
    )
}

fn default_interface_in(v4: &Path, v6: &Path) -> Result<String, RouteError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| RouteError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    // A host without IPv6 has no ipv6_route file; that is not an error on its own.
    let v4_text = read(v4)?;
    if let Some(name) = ipv4_default(&v4_text) {
        return Ok(name);
    }
    let v6_text = read(v6).unwrap_or_default();
    ipv6_default(&v6_text).ok_or(RouteError::NoDefaultRoute)
}

/// The default route's interface in `/proc/net/route` text.
pub fn ipv4_default(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let metric = metric.parse::<u32>().ok()?;
            let default = u32::from_str_radix(dest, 16).ok()? == 0
                && u32::from_str_radix(mask, 16).ok()? == 0;
            (default && flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && *iface != "lo")
                .then(|| (metric, (*iface).to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

/// The default route's interface in `/proc/net/ipv6_route` text.
pub fn ipv6_default(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let default = f[0].bytes().all(|b| b == b'0') && f[0].len() == 32 && f[1] == "00";
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let iface = f[9];
            (default && flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && iface != "lo")
                .then(|| (metric, iface.to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
wlan0\t00000000\t010200C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    const V6: &str = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     ens5
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn ipv4_lowest_metric_default_wins() {
        assert_eq!(ipv4_default(V4).as_deref(), Some("eth0"));
    }

    #[test]
    fn ipv4_without_default_route() {
        let only_local = V4
            .lines()
            .filter(|l| !l.contains("\t00000000\t010200C0"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(ipv4_default(&only_local), None);
    }

    #[test]
    fn ipv6_default_skips_the_loopback_reject_route() {
        assert_eq!(ipv6_default(V6).as_deref(), Some("ens5"));
        let no_default: String = V6
            .lines()
            .filter(|l| !l.ends_with("ens5"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(ipv6_default(&no_default), None);
    }

    #[test]
    fn falls_back_to_ipv6_and_reports_no_route() {
        let dir = tempfile::tempdir().unwrap();
        let (v4, v6) = (dir.path().join("route"), dir.path().join("ipv6_route"));
        std::fs::write(&v4, V4.lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
        std::fs::write(&v6, V6).unwrap();
        assert_eq!(default_interface_in(&v4, &v6).unwrap(), "ens5");
        std::fs::write(&v6, "").unwrap();
        assert!(matches!(
            default_interface_in(&v4, &v6),
            Err(RouteError::NoDefaultRoute)
        ));
        assert!(matches!(
            default_interface_in(&dir.path().join("none"), &v6),
            Err(RouteError::Read { .. })
        ));
    }

    #[test]
    fn garbage_lines_are_ignored() {
        assert_eq!(ipv4_default("header\nx y z\n\u{0}\n"), None);
        assert_eq!(ipv6_default("1 2 3\nzz zz zz zz zz zz zz zz zz zz\n"), None);
    }
}
