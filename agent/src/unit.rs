//! The hardened systemd unit, as the `.deb` and the `.rpm` ship it, for installs of the bare
//! binary (`container-manager-agent print-unit`). One unit for every install path: the text is
//! `packaging/container-manager-agent.service` itself, compiled in.

/// The packaged unit, byte for byte.
pub const PACKAGED_UNIT: &str = include_str!("../../packaging/container-manager-agent.service");

/// Where the packages install the binary; the packaged unit names this path.
pub const PACKAGED_BINARY: &str = "/usr/bin/container-manager-agent";

/// The service user's sysusers.d line, as the packages ship it.
pub const PACKAGED_SYSUSERS: &str =
    include_str!("../../packaging/container-manager-agent.sysusers");

/// Why a binary path cannot go into the unit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("--binary {0:?}: expected an absolute path (it goes into ExecStart=)")]
    NotAbsolute(String),
    #[error(
        "--binary {0:?}: expected a path without spaces, quotes, backslashes, '%' or '$' (systemd would split or expand it)"
    )]
    Unsafe(String),
}

/// The packaged unit with `binary` in place of the packaged binary's path.
pub fn unit_for(binary: &str) -> Result<String, UnitError> {
    if !binary.starts_with('/') {
        return Err(UnitError::NotAbsolute(binary.to_owned()));
    }
    if binary
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%$;".contains(c))
    {
        return Err(UnitError::Unsafe(binary.to_owned()));
    }
    Ok(PACKAGED_UNIT.replace(PACKAGED_BINARY, binary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_path_gives_the_packaged_unit_byte_for_byte() {
        assert_eq!(unit_for(PACKAGED_BINARY).as_deref(), Ok(PACKAGED_UNIT));
    }

    #[test]
    fn another_path_replaces_every_exec_line_and_nothing_else() {
        let unit = unit_for("/usr/local/bin/container-manager-agent").unwrap();
        assert!(!unit.contains("/usr/bin/container-manager-agent"));
        let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("Exec")).collect();
        assert_eq!(exec.len(), 2, "{exec:?}");
        for line in exec {
            assert!(
                line.contains("=/usr/local/bin/container-manager-agent "),
                "{line}"
            );
        }
        // The hardening is the packaged unit's.
        for key in [
            "User=container-manager",
            "CapabilityBoundingSet=CAP_NET_RAW",
            "AmbientCapabilities=CAP_NET_RAW",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(unit.lines().any(|l| l == key), "{key} missing");
        }
        assert_eq!(unit.lines().count(), PACKAGED_UNIT.lines().count());
    }

    #[test]
    fn relative_or_unsafe_paths_are_refused_by_name() {
        assert_eq!(
            unit_for("bin/agent"),
            Err(UnitError::NotAbsolute("bin/agent".into()))
        );
        for bad in [
            "/opt/my agent",
            "/opt/a$b",
            "/opt/a%n",
            "/opt/a\"b",
            "/opt/a;b",
        ] {
            let err = unit_for(bad).unwrap_err();
            assert_eq!(err, UnitError::Unsafe(bad.into()));
            assert!(err.to_string().contains("--binary"), "{err}");
        }
    }
}
