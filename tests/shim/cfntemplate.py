"""CloudFormation templates as the tests and the shim read them: YAML with the short-form tags,
and the template as moto can deploy it (without the custom resources, which moto would run as
Lambda functions in Docker; tests/cloud/test_helper.py and the cloud twin run their code)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: `!Ref x` becomes {"Ref": x}, `!Sub s` {"Fn::Sub": s}..."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def parse(text: str) -> dict:
    return yaml.load(text, Loader=_CfnLoader)


def load_template(path: str | Path) -> dict:
    return parse(Path(path).read_text())


def deployable(template: dict) -> str:
    """The template without its custom resources, as JSON."""
    body = copy.deepcopy(template)
    custom = [k for k, v in body["Resources"].items() if v["Type"].startswith("Custom::")]
    for logical_id in custom:
        del body["Resources"][logical_id]
    for resource in body["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends:
            depends = [d for d in depends if d not in custom]
            if depends:
                resource["DependsOn"] = depends
            else:
                del resource["DependsOn"]
    return json.dumps(body)
