//! The hardened systemd unit, as the `.deb` and the `.rpm` ship it, for installs of the bare
//! binary (`container-manager-agent print-unit`). One unit for every install path: the text is
//! `packaging/container-manager-agent.service` itself, compiled in.

/// The packaged unit, byte for byte.
pub const PACKAGED_UNIT: &str = include_str!("../../packaging/container-manager-agent.service");

/// The save unit, byte for byte: at shutdown, after the agent, it saves the game if the agent
/// did not (`container-manager-agent save-game`).
pub const PACKAGED_SAVE_UNIT: &str = include_str!("../../packaging/container-manager-save.service");

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
    with_binary(PACKAGED_UNIT, binary)
}

/// The save unit with `binary` in place of the packaged binary's path.
pub fn save_unit_for(binary: &str) -> Result<String, UnitError> {
    with_binary(PACKAGED_SAVE_UNIT, binary)
}

fn with_binary(unit: &str, binary: &str) -> Result<String, UnitError> {
    if !binary.starts_with('/') {
        return Err(UnitError::NotAbsolute(binary.to_owned()));
    }
    if binary
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%$;".contains(c))
    {
        return Err(UnitError::Unsafe(binary.to_owned()));
    }
    Ok(unit.replace(PACKAGED_BINARY, binary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_path_gives_the_packaged_unit_byte_for_byte() {
        assert_eq!(unit_for(PACKAGED_BINARY).as_deref(), Ok(PACKAGED_UNIT));
    }

    #[test]
    fn the_save_unit_stops_after_the_agent_and_before_docker_and_runs_save_game() {
        assert_eq!(
            save_unit_for(PACKAGED_BINARY).as_deref(),
            Ok(PACKAGED_SAVE_UNIT)
        );
        let unit = save_unit_for("/usr/local/bin/container-manager-agent").unwrap();
        let line = |key: &str| {
            unit.lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("After=").contains("docker.service"));
        assert!(line("Before=").contains("container-manager-agent.service"));
        assert_eq!(
            line("ExecStop="),
            "ExecStop=/usr/local/bin/container-manager-agent save-game --config /etc/container-manager/agent.toml"
        );
        assert!(save_unit_for("relative").is_err());
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
