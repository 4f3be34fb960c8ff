"""cfn-lint and checkov report nothing on either template (checkov skips carry a reason), and
cdk-nag's AWS Solutions and NIST 800-53 rev 5 packs leave no finding unexplained on any template
in cloud/: each is fixed or suppressed in the resource's own Metadata with its reason."""

import json
import re
import subprocess

import pytest

from conftest import MAIN_TEMPLATE, ROOT, VENV_BIN, WAKE_TEMPLATE, load_template

TEMPLATES = [MAIN_TEMPLATE, WAKE_TEMPLATE, MAIN_TEMPLATE.parent / "artifact-bucket.yaml", MAIN_TEMPLATE.parent / "base.yaml"]


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
    assert run.returncode == 0
    if template.name == "base.yaml":
        # checkov 3.2 has no CloudFormation check for a VPC, its subnets, routes or gateway
        # endpoint, so it reports a bare summary; the same resources pass in the main template.
        assert (report["failed"], report["parsing_errors"]) == (0, 0), report
        return
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 0


@pytest.mark.parametrize("template", TEMPLATES[:3], ids=lambda p: p.name)  # the base needs no skip
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


# cdk-nag (npm, tools/nag; tests/harness/setup.sh installs it): every template in cloud/.
ALL_TEMPLATES = sorted(MAIN_TEMPLATE.parent.glob("*.yaml"))
NAG = ROOT / "tools" / "nag"


@pytest.fixture(scope="module")
def nag():
    assert (NAG / "node_modules" / "cdk-nag").exists(), "run tests/harness/setup.sh: tools/nag/node_modules is missing"
    run = subprocess.run(["node", str(NAG / "nag.mjs"), *[str(t.relative_to(ROOT)) for t in ALL_TEMPLATES]],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.parametrize("template", ALL_TEMPLATES, ids=lambda p: p.name)
def test_cdk_nag_leaves_no_finding_unexplained(nag, template):
    report = nag[str(template.relative_to(ROOT))]
    assert report["findings"] == [], "fix each, or suppress it in the resource's Metadata.cdk_nag with the reason"
    for s in report["suppressed"]:
        assert len(s["reason"]) >= 40, s


def test_the_docs_list_every_rule_the_templates_skip_and_no_other():
    """docs/cloud.md, "Checks and what they skip", names each checkov and cdk-nag rule that a
    template in cloud/ skips or suppresses (the AMI recipe and the artifact bucket included)."""
    checkov, nag_rules = set(), set()
    for template in ALL_TEMPLATES:
        for resource in load_template(template)["Resources"].values():
            meta = resource.get("Metadata", {})
            checkov |= {s["id"] for s in meta.get("checkov", {}).get("skip", [])}
            nag_rules |= {s["id"] for s in meta.get("cdk_nag", {}).get("rules_to_suppress", [])}
    docs = (ROOT / "docs" / "cloud.md").read_text().split("## Checks and what they skip", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for first, rest in re.findall(r"CKV_AWS_(\d+)((?:/\d+)*)", docs):
        listed |= {f"CKV_AWS_{n}" for n in [first, *rest.split("/")[1:]]}
    assert listed == checkov
    assert set(re.findall(r"`((?:AwsSolutions|NIST\.800\.53\.R5)-[A-Za-z0-9]+)`", docs)) == nag_rules
