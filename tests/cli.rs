//! The binary's command line: `check-config` and `run` on bad configs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// These tests drive the binary as a separate process on the real clock.
#![allow(clippy::disallowed_methods)]

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

/// `run --dry-run --log-format json` on a host with no AWS, no Docker and no packet socket:
/// every stderr line is one JSON object with an RFC 3339 millisecond timestamp, a level and a
/// message; the agent starts, keeps running, and drains on SIGTERM.
/// A file that is not TOML: both commands exit 78 and name the line and column, and show the
/// line with a caret under the column.
#[test]
fn syntax_errors_name_the_line_and_column_and_exit_78() {
    let head = "[container]\necs_container_name = \"game\"\n";
    let cases = [
        // (file, line, column, the line shown)
        (format!("{head}[dns]\nttl = = 1\n"), 4, 7, "ttl = = 1"),
        (
            format!("{head}docker_name = \"game\n[activity]\nports = [\"udp:1\"]\n"),
            3,
            20,
            "docker_name = \"game",
        ),
        (
            format!("{head}ecs_container_name = \"other\"\n"),
            3,
            1,
            "ecs_container_name = \"other\"",
        ),
        (
            format!("{head}[activity]\nports = [\"udp:1\"]\n\n[container]\n"),
            6,
            2,
            "[container]",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, line, column, shown) in cases {
        let p = write(&dir, "agent.toml", &text);
        for sub in ["check-config", "run"] {
            let out = Command::new(BIN)
                .args([sub, "--config"])
                .arg(&p)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{sub}: {err}");
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 3, "{sub}: {err}");
            assert!(
                lines[0].starts_with(&format!(
                    "{}: line {line}, column {column}: not valid TOML: ",
                    p.display()
                )),
                "{sub}: {err}"
            );
            assert_eq!(lines[1], format!("  {line} | {shown}"), "{sub}: {err}");
            assert_eq!(
                lines[2],
                format!("    | {}^", " ".repeat(column - 1)),
                "{sub}: {err}"
            );
        }
    }
}

#[test]
fn json_logs_and_a_clean_drain_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "agent.toml",
        "[container]\ndocker_name = \"no-such-game\"\n[activity]\ninterface = \"cmnoexist0\"\nports = [\"udp:2456\"]\nsample_interval = \"200ms\"\nidle_after = \"1s\"\nboot_grace = \"0s\"\n",
    );
    let child = Command::new(BIN)
        .args(["run", "--dry-run", "--log-format", "json", "--config"])
        .arg(&p)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9/")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("JOURNAL_STREAM")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stderr).unwrap();
    let mut events = vec![];
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let ts = v["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("no timestamp: {line}"));
        // 2026-11-22T10:00:01.123Z
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        if let Some(e) = v["event"].as_str() {
            events.push(e.to_string());
        }
    }
    assert_eq!(
        events.first().map(String::as_str),
        Some("agent_started"),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("agent_stopped"),
        "{events:?}"
    );
    // The interface does not exist, so counting fails, samples are unknown and nothing idles, even with idle_after 1 s.
    assert!(
        events.iter().filter(|e| *e == "sample").count() >= 5,
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e == "scale_in_requested"),
        "{events:?}"
    );
}

#[test]
fn print_unit_prints_the_packaged_unit_for_the_given_path() {
    let packaged = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/container-manager-agent.service"
    ))
    .unwrap();
    let out = Command::new(BIN).arg("print-unit").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), packaged);

    let out = Command::new(BIN)
        .args([
            "print-unit",
            "--binary",
            "/usr/local/bin/container-manager-agent",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = packaged.replace(
        "/usr/bin/container-manager-agent",
        "/usr/local/bin/container-manager-agent",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);

    let out = Command::new(BIN)
        .args(["print-unit", "--binary", "relative/agent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--binary") && err.contains("absolute"),
        "{err}"
    );

    let sysusers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/container-manager-agent.sysusers"
    ))
    .unwrap();
    let out = Command::new(BIN).arg("print-sysusers").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), sysusers);
}
