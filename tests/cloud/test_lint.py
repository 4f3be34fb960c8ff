"""cfn-lint and checkov report nothing on either template (checkov skips carry a reason)."""

import json
import subprocess

import pytest

from conftest import MAIN_TEMPLATE, VENV_BIN, WAKE_TEMPLATE, load_template

TEMPLATES = [MAIN_TEMPLATE, WAKE_TEMPLATE, MAIN_TEMPLATE.parent / "artifact-bucket.yaml"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing_including_informational(template):
    # Exit codes are bit flags: 2 error, 4 warning, 8 informational. The experimental
    # rules (I4010, metadata for AI assistants) are not run.
    run = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(template), "--include-checks", "I"],
        capture_output=True, text=True, timeout=300)
    assert (run.returncode, run.stdout) == (0, ""), run.stdout + run.stderr


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_checkov_fails_nothing(template, tmp_path):
    run = subprocess.run(
        [str(VENV_BIN / "checkov"), "-f", str(template), "--framework", "cloudformation",
         "--skip-download", "--output", "json", "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(run.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 0
    assert run.returncode == 0


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_checkov_skip_gives_a_reason(template):
    skips = [
        (logical_id, skip)
        for logical_id, resource in load_template(template)["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "expected the documented skips"
    for logical_id, skip in skips:
        assert skip["id"].startswith("CKV"), logical_id
        assert len(skip.get("comment", "")) > 40, f"{logical_id} {skip['id']} needs a reason"
