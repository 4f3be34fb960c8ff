"""cloud/cm, the operator's one command: every verb has --help, and bad input (an unknown verb,
a missing or broken parameter file, a stack that does not exist) gets one clear line and exit 2.
The verbs against a deployed stack are the stories in tests/twin/test_twin_operator.py."""

import os
import subprocess

from conftest import ROOT, VENV_BIN

CM = ROOT / "cloud" / "cm"
VERBS = ["deploy", "destroy", "status", "wake", "sleep", "import", "export", "backups", "restore", "shell"]


def run(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing"})
    env.update(env_extra or {})
    return subprocess.run([str(CM), *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_every_verb_has_help_and_the_top_level_lists_them():
    top = run(["--help"])
    assert top.returncode == 0
    for verb in VERBS:
        assert verb in top.stdout
        r = run([verb, "--help"])
        assert r.returncode == 0 and "PARAMS.json" in r.stdout and "--region" in r.stdout, (verb, r.stdout)
    for verb in ("status", "wake", "sleep"):
        assert "--json" in run([verb, "--help"]).stdout
    assert "--force" in run(["sleep", "--help"]).stdout


def test_bad_input_gets_one_line_and_exit_2(tmp_path, params):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    nameless = tmp_path / "nameless.json"
    nameless.write_text('[{"ParameterKey": "RecordName", "ParameterValue": "x.example.com"}]')
    cases = [
        (["bogus", str(params)], "invalid choice: 'bogus'"),
        (["status", str(tmp_path / "missing.json")], "missing.json: no such parameter file"),
        (["status", str(broken)], "broken.json: not a parameter file like cloud/examples/*.json"),
        (["wake", str(nameless)], "nameless.json: ServerName is missing"),
        (["status"], "the following arguments are required: PARAMS.json"),
    ]
    for args, expected in cases:
        r = run([*args, "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], (args, r.stderr)


def test_a_stack_that_does_not_exist_is_named(params, moto_endpoint, aws):
    for verb in ("status", "wake", "sleep"):
        r = run([verb, str(params), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": moto_endpoint})
        assert r.returncode == 2, r
        assert r.stderr.strip() == "cm: no stack valheim in eu-west-1: deploy it first (cloud/cm deploy PARAMS.json)"


def test_deploy_passes_the_package_to_the_deploy_command_and_takes_the_world_flags(tmp_path, params):
    """cloud/cm deploy is cloud/deploy.sh deploy: a package for another architecture is refused by
    it, before any AWS call, and the world flags are its own."""
    package = tmp_path / "container-manager-agent"
    package.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (0xB7).to_bytes(2, "little")
                        + bytes(44))
    r = run(["deploy", str(params), "--region", "eu-west-1", "--package", str(package), "--adopt-world"],
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2, r.stderr
    assert f"deploy: error: {package} is built for aarch64 (arm64), but the instance is x86_64" in r.stderr
    help_text = run(["deploy", "--help"]).stdout
    assert "--adopt-world" in help_text and "--replace-world" in help_text
