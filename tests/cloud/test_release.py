"""The release workflow (.github/workflows/release.yml): it lints clean, builds and packages with
the Makefile's commands, and its tag check and checksum steps do what they say when run."""

import hashlib
import os
import re
import subprocess
import tomllib

import pytest
import yaml

from conftest import ROOT, VENV_BIN

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
MAKEFILE = ROOT / "Makefile"
AGENT_TOML = ROOT / "agent" / "Cargo.toml"
BINARY_ASSET = "container-manager-agent-x86_64-linux"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def triggers(workflow):
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def step(workflow, step_id):
    found = [s for job in workflow["jobs"].values() for s in job["steps"] if s.get("id") == step_id]
    assert len(found) == 1, f"expected one step with id {step_id!r} in {WORKFLOW.name}"
    return found[0]


def run_scripts(job):
    return [s["run"] for s in job["steps"] if "run" in s]


def command_lines(job):
    """Every line of the job's run: scripts, stripped."""
    return [line.strip() for script in run_scripts(job) for line in script.splitlines()]


def makefile_recipe(target):
    """The recipe lines of a Makefile target (tab-indented lines after `target:`)."""
    lines = MAKEFILE.read_text().splitlines()
    start = lines.index(f"{target}:")
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    assert recipe, f"the Makefile has no recipe for {target}"
    return recipe


def agent_version():
    return tomllib.loads(AGENT_TOML.read_text())["package"]["version"]


def run_step(script, cwd, env=None, path=None):
    """Runs a step's script as GitHub does with `shell: bash`."""
    script_file = cwd / ".step.sh"
    script_file.write_text(script)
    run = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={"PATH": path or "/usr/bin:/bin", "HOME": str(cwd), **(env or {})})
    script_file.unlink()
    return run


def test_release_workflow_passes_actionlint():
    actionlint = VENV_BIN / "actionlint"
    assert actionlint.exists(), (
        f"{actionlint} is missing: run tests/harness/setup.sh (tests/requirements.txt installs it)")
    # With shellcheck on PATH, actionlint also checks every run: script with it.
    run = subprocess.run([str(actionlint), "-no-color", str(WORKFLOW.relative_to(ROOT))],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, ""), run.stdout + run.stderr


def test_release_runs_on_a_version_tag_push_only(workflow):
    on = triggers(workflow)
    assert set(on) <= {"push", "workflow_dispatch"}
    assert on["push"] == {"tags": ["v*.*.*"]}


def test_release_may_write_contents_only_in_the_job_that_publishes(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    writers = {name for name, job in workflow["jobs"].items()
               if "write" in (job.get("permissions") or {}).values()}
    assert writers == {"publish"}
    assert workflow["jobs"]["publish"]["permissions"] == {"contents": "write"}
    assert workflow["jobs"]["build"]["permissions"] == {"contents": "read"}
    # The writing job runs no project code: it neither checks out nor builds.
    publish = workflow["jobs"]["publish"]
    assert [s["uses"].split("@")[0] for s in publish["steps"] if "uses" in s] == [
        "actions/download-artifact"]
    assert not any(line.split()[:1] in (["cargo"], ["make"]) for line in command_lines(publish))


def test_release_builds_and_packages_with_the_makefiles_commands(workflow):
    build = workflow["jobs"]["build"]
    lines = command_lines(build)
    for target in ("deb", "rpm"):
        for command in makefile_recipe(target):
            assert command in lines, f"`make {target}` runs `{command}`; the workflow does not"
    # One release build feeds both packages and the bare binary.
    release_build = "cargo build --release -p container-manager-agent"
    assert sum(line == release_build for line in lines) == 1
    assert "cargo deb -p container-manager-agent --no-build --output dist/" in lines
    for tool in ("cargo-deb", "cargo-generate-rpm"):
        assert any(line.startswith("cargo install --locked") and tool in line for line in lines), (
            f"{tool} is not installed with cargo install --locked")


def test_release_checks_the_tag_before_building(workflow):
    steps = workflow["jobs"]["build"]["steps"]
    ids = [s.get("id") for s in steps]
    first_build = next(i for i, s in enumerate(steps) if "cargo build" in s.get("run", ""))
    assert ids.index("check-tag") < first_build


def test_release_ships_the_stripped_binary_and_checks_its_glibc(workflow):
    lines = command_lines(workflow["jobs"]["build"])
    assert any(re.search(rf"\s\"?\$bin\"?\s+dist/{BINARY_ASSET}$", line) for line in lines)
    assert f"packaging/check-glibc.sh dist/{BINARY_ASSET}" in lines
    # The binary comes out of cargo stripped: the release profile says so.
    profile = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]["release"]
    assert profile["strip"] is True


def test_release_accepts_the_tag_that_is_the_crate_version(workflow, tmp_path):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "Cargo.toml").symlink_to(AGENT_TOML)
    version = agent_version()
    run = run_step(step(workflow, "check-tag")["run"], tmp_path, {"GITHUB_REF_NAME": f"v{version}"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"matches container-manager-agent {version}" in run.stdout


@pytest.mark.parametrize("tag", ["v{bumped}", "{version}", "v{version}-rc1", "main", ""])
def test_release_refuses_a_tag_that_is_not_the_crate_version(workflow, tmp_path, tag):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "Cargo.toml").symlink_to(AGENT_TOML)
    version = agent_version()
    major, minor, patch = version.split(".")
    name = tag.format(version=version, bumped=f"{major}.{minor}.{int(patch) + 1}")
    run = run_step(step(workflow, "check-tag")["run"], tmp_path, {"GITHUB_REF_NAME": name})
    assert run.returncode != 0, run.stdout
    assert f"::error::tag '{name}' does not match the agent's version {version}" in run.stdout


def test_release_tag_check_fails_clearly_without_a_package_version(workflow, tmp_path):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "Cargo.toml").write_text(
        '[package]\nname = "x"\nversion.workspace = true\n\n[dependencies]\nserde = { version = "1" }\n')
    run = run_step(step(workflow, "check-tag")["run"], tmp_path, {"GITHUB_REF_NAME": "v1.0.0"})
    assert run.returncode != 0
    assert "::error::no version in the [package] table of agent/Cargo.toml" in run.stdout


def test_release_steps_that_the_tests_run_use_no_workflow_expressions(workflow):
    for step_id in ("check-tag", "sha256sums"):
        assert "${{" not in step(workflow, step_id)["run"], step_id


def test_release_writes_sha256sums_that_sha256sum_checks(workflow, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    files = {"container-manager-agent_0.1.0-1_amd64.deb": b"a deb\n", BINARY_ASSET: b"\x7fELF..."}
    for name, data in files.items():
        (dist / name).write_bytes(data)
    run = run_step(step(workflow, "sha256sums")["run"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    sums = (dist / "SHA256SUMS").read_text()
    assert sorted(sums.splitlines()) == sorted(
        f"{hashlib.sha256(data).hexdigest()}  {name}" for name, data in files.items())
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=dist,
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(check.stdout.splitlines()) == sorted(f"{name}: OK" for name in files)
    # A second run (a re-run job) sums the files again, not the old SHA256SUMS.
    assert run_step(step(workflow, "sha256sums")["run"], tmp_path).returncode == 0
    assert (dist / "SHA256SUMS").read_text() == sums


def test_release_sha256sums_fails_on_an_empty_dist(workflow, tmp_path):
    (tmp_path / "dist").mkdir()
    run = run_step(step(workflow, "sha256sums")["run"], tmp_path)
    assert run.returncode != 0
    assert "::error::dist/ has no files to sum" in run.stdout


def test_release_publishes_rpm_deb_binary_and_sha256sums(workflow, tmp_path):
    """The publish step, run with a stand-in gh that records its arguments."""
    version = agent_version()
    build = workflow["jobs"]["build"]
    upload = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert [s["with"]["path"] for s in upload] == ["dist/"]
    download = [s for s in workflow["jobs"]["publish"]["steps"]
                if s.get("uses", "").startswith("actions/download-artifact@")]
    assert [s["with"] for s in download] == [{"name": upload[0]["with"]["name"], "path": "dist"}]

    dist = tmp_path / "dist"
    dist.mkdir()
    assets = [f"container-manager-agent_{version}-1_amd64.deb",
              f"container-manager-agent-{version}-1.x86_64.rpm", BINARY_ASSET]
    for name in assets:
        (dist / name).write_text(f"{name}\n")
    assert run_step(step(workflow, "sha256sums")["run"], tmp_path).returncode == 0

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$GH_ARGS"\n')
    gh.chmod(0o755)
    publish = step(workflow, "publish")
    assert publish["env"] == {"GH_TOKEN": "${{ github.token }}",
                              "GH_REPO": "${{ github.repository }}"}
    args_file = tmp_path / "gh-args"
    run = run_step(publish["run"], tmp_path,
                   {"GITHUB_REF_NAME": f"v{version}", "GH_ARGS": str(args_file)},
                   path=f"{bin_dir}:/usr/bin:/bin")
    assert run.returncode == 0, run.stdout + run.stderr
    args = args_file.read_text().splitlines()
    assert args[:3] == ["release", "create", f"v{version}"]
    assert "--verify-tag" in args
    uploaded = sorted(os.path.basename(a) for a in args if a.startswith("dist/"))
    assert uploaded == sorted(assets + ["SHA256SUMS"])


def test_release_refuses_to_publish_files_that_do_not_match_sha256sums(workflow, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / BINARY_ASSET).write_text("built\n")
    assert run_step(step(workflow, "sha256sums")["run"], tmp_path).returncode == 0
    (dist / BINARY_ASSET).write_text("changed on the way\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text("#!/bin/bash\ntouch \"$GH_ARGS\"\n")
    (bin_dir / "gh").chmod(0o755)
    args_file = tmp_path / "gh-args"
    run = run_step(step(workflow, "publish")["run"], tmp_path,
                   {"GITHUB_REF_NAME": "v0.0.0", "GH_ARGS": str(args_file)},
                   path=f"{bin_dir}:/usr/bin:/bin")
    assert run.returncode != 0
    assert "FAILED" in run.stdout
    assert not args_file.exists(), "gh ran although a checksum did not match"
