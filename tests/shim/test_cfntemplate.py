"""The shim's change-set review of the real template (tests/shim/cfntemplate.py): what it reports
is what CloudFormation would, for the changes the deploy command reviews."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cfntemplate import Values, load_template, resource_changes  # noqa: E402

TEMPLATE = load_template(HERE.parents[1] / "cloud" / "container-manager.yaml")
GIVEN = {"ServerName": "valheim", "HostedZoneId": "Z1", "RecordName": "v.example.com",
         "AgentPackageSha256": "ab" * 32, "AgentPackageKey": "agent/" + "ab" * 32 + "/container-manager-agent"}


def changes(before: dict[str, str], after: dict[str, str]) -> dict[str, dict[str, str]]:
    out = resource_changes(Values(TEMPLATE, {**GIVEN, **before}, "us-east-1"),
                           Values(TEMPLATE, {**GIVEN, **after}, "us-east-1"))
    return {c["LogicalResourceId"]: c for c in out}


def test_a_new_environment_file_is_a_new_task_definition():
    """EnvironmentFileKey reaches the task definition through Fn::Sub (the file's S3 ARN): a new
    file is a task definition replaced, as CloudFormation reports it, so the deploy command's
    review sees it (it refuses it while the server is up)."""
    one, two = "env/" + "1" * 64 + "/game.env", "env/" + "2" * 64 + "/game.env"
    got = changes({"EnvironmentFileKey": one}, {"EnvironmentFileKey": two})
    assert got["TaskDefinition"]["Action"] == "Modify" and got["TaskDefinition"]["Replacement"] == "True", got
    assert changes({"EnvironmentFileKey": ""}, {"EnvironmentFileKey": one})["TaskDefinition"]["Action"] == "Modify"
    # The same file again: nothing; a change the game does not feel (the agent's idle time): nothing.
    assert "TaskDefinition" not in changes({"EnvironmentFileKey": one}, {"EnvironmentFileKey": one})
    assert "TaskDefinition" not in changes({"IdleMinutes": "10"}, {"IdleMinutes": "12"})


def test_fn_sub_puts_parameters_in_and_leaves_resources_as_written():
    v = Values(TEMPLATE, {**GIVEN, "EnvironmentFileKey": "env/k/game.env"}, "eu-west-1")
    assert v({"Fn::Sub": "${AWS::Region}/${EnvironmentFileKey}"}) == "eu-west-1/env/k/game.env"
    unresolved = v({"Fn::Sub": "arn:${ArtifactBucket}/${EnvironmentFileKey}"})
    assert "arn:${ArtifactBucket}/env/k/game.env" in unresolved and unresolved != v(
        {"Fn::Sub": "arn:${ArtifactBucket}/${ServerName}"})
    assert v({"Fn::Sub": ["${A}-${ServerName}", {"A": {"Ref": "ServerName"}}]}) == "valheim-valheim"
