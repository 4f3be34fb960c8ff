//! The binary's command line: `check-config` and `run` on bad configs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_container-manager-agent");

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_the_documented_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agent.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn check_config_and_run_reject_a_bad_port_with_78_and_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "agent.toml",
        "[container]\necs_container_name = \"game\"\n[activity]\nports = [\"udp:2456\", \"udp:70000\"]\n",
    );
    for sub in ["check-config", "run"] {
        let out = Command::new(BIN)
            .args([sub, "--config"])
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("agent.toml: activity.ports[1]: \"udp:70000\" is not a port range (expected udp:N, tcp:N or udp:N-M)"),
            "{sub}: {err}"
        );
        // A config error performs no action: nothing but the one error line is printed.
        assert_eq!(err.trim().lines().count(), 1, "{sub}: {err}");
    }
}

#[test]
fn unknown_keys_and_missing_files_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "agent.toml",
        "[container]\necs_container_name = \"game\"\nstop_timout = \"5s\"\n[activity]\nports = [\"udp:1\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("container.stop_timout: unknown key `stop_timout`")
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml: (file): cannot read")
    );
}
