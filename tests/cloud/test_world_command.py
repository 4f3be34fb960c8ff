"""cloud/world.sh (make world-import, world-export, world-restore, shell): what it refuses before
any AWS call, with an error that names the file and what was expected, and what it refuses
against the emulator without a deployed stack. The jobs themselves, on an instance, are the
stories in tests/twin/test_twin_world.py."""

import io
import json
import os
import subprocess
import tarfile

import pytest

from conftest import ROOT, VENV_BIN

WORLD = ROOT / "cloud" / "world.sh"
NOWHERE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # any AWS call would fail at once


def run(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing"})
    env.update(env_extra or {})
    return subprocess.run(["bash", str(WORLD), *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def archive(path, members):
    """A .tar.gz with the given (TarInfo, bytes or None) members."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("case, expected", [
    ("absolute", "/etc/passwd: a member outside the world's folder (an absolute path or ..); nothing was uploaded"),
    ("dotdot", "worlds/../../escape: a member outside the world's folder"),
    ("link", "worlds/link: a link to /etc/shadow, outside the world's folder"),
    ("device", "dev: not a file, folder or link (a device or a pipe)"),
    ("empty", "the archive holds no file: there is no world in it"),
    ("not-gzip", "not a .tar.gz archive"),
])
def test_import_refuses_an_archive_that_would_write_outside_the_world_before_any_aws_call(tmp_path, params, case, expected):
    path = tmp_path / "world.tar.gz"
    ok = (member("worlds/world.json"), b"{}")
    if case == "absolute":
        archive(path, [ok, (member("/etc/passwd"), b"x")])
    elif case == "dotdot":
        archive(path, [ok, (member("worlds/../../escape"), b"x")])
    elif case == "link":
        archive(path, [ok, (member("worlds/link", tarfile.SYMTYPE, "/etc/shadow"), None)])
    elif case == "device":
        archive(path, [ok, (member("dev", tarfile.CHRTYPE), None)])
    elif case == "empty":
        archive(path, [(member("worlds", tarfile.DIRTYPE), None)])
    else:
        path.write_bytes(b"PK\x03\x04 a zip, not a tar.gz")
    r = run(["import", str(params), str(path), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2, r
    assert f"{path}: {expected}" in r.stderr, r.stderr
    assert "credentials" not in r.stderr, "refused before any AWS call"


def test_import_refuses_an_empty_folder_a_missing_source_and_no_source(tmp_path, params):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run(["import", str(params), str(empty), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2 and f"{empty}: the folder is empty: there is no world in it" in r.stderr, r.stderr
    r = run(["import", str(params), str(tmp_path / "nope"), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2 and f"{tmp_path / 'nope'}: no such file or folder" in r.stderr, r.stderr
    r = run(["import", str(params), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2 and "import needs a folder or a .tar.gz" in r.stderr, r.stderr


def test_world_refuses_bad_options_naming_what_was_expected(tmp_path, params):
    cases = [
        (["restore", str(params), "--date", "yesterday"], "--date: expected YYYY-MM-DD (a UTC day), not 'yesterday'"),
        (["export", str(params), "--timeout", "0"], "--timeout: expected minutes from 1 to 9999, not '0'"),
        (["shell", str(params), "--minutes", "x"], "--minutes: expected minutes from 1 to 9999, not 'x'"),
        (["sleep", str(params)], "unknown command: sleep"),
        (["export", str(tmp_path / "missing.json")], "missing.json: no such parameter file"),
    ]
    for args, expected in cases:
        r = run([*args, "--region", "eu-west-1"], NOWHERE)
        assert r.returncode == 2 and expected in r.stderr, (args, r.stderr)
    existing = tmp_path / "taken.tar.gz"
    existing.write_bytes(b"")
    r = run(["export", str(params), str(existing), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2 and f"{existing} exists already" in r.stderr, r.stderr


def test_a_parameter_file_that_still_sets_ssh_cidr_is_told_why_it_went(tmp_path, params):
    items = json.loads(params.read_text()) + [{"ParameterKey": "SshCidr", "ParameterValue": "203.0.113.0/24"}]
    params.write_text(json.dumps(items))
    for script in ("deploy.sh", "world.sh"):
        r = subprocess.run(["bash", str(ROOT / "cloud" / script), "deploy" if script == "deploy.sh" else "backups",
                            str(params), "--region", "eu-west-1"], env={**os.environ, **NOWHERE},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r
        assert "my-valheim.json: SshCidr: this parameter was removed" in r.stderr, r.stderr
        assert "Session Manager is the one way in" in r.stderr


def test_world_names_a_stack_that_does_not_exist(params, moto_endpoint, aws):
    r = run(["backups", str(params), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": moto_endpoint})
    assert r.returncode == 2, r
    assert "no stack valheim in eu-west-1: deploy it first (make deploy PARAMS=" in r.stderr, r.stderr
