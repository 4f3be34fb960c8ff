"""CloudFormation templates as the tests and the shim read them: YAML with the short-form tags,
and the template as moto can deploy it (without the custom resources, which moto would run as
Lambda functions in Docker; tests/cloud/test_helper.py and the cloud twin run their code)."""

from __future__ import annotations

import copy
import json
import re
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


# Properties whose change makes CloudFormation replace the resource ("Update requires:
# Replacement"; createOnlyProperties in the resource's schema; docs/aws-sources.md, sections 10
# and 17).
CREATE_ONLY = {
    "AWS::EFS::FileSystem": ("AvailabilityZoneName", "Encrypted", "KmsKeyId", "PerformanceMode"),
    # A mount target and an access point belong to one file system: a new file system means new ones.
    "AWS::EFS::MountTarget": ("FileSystemId", "SubnetId", "IpAddress", "Ipv6Address", "IpAddressType"),
    "AWS::EFS::AccessPoint": ("FileSystemId", "PosixUser", "RootDirectory", "ClientToken"),
    # Every property of a task definition: a change registers a new revision, which the service
    # then rolls out (replacing the running task).
    "AWS::ECS::TaskDefinition": ("ContainerDefinitions", "Volumes", "Family", "NetworkMode", "TaskRoleArn",
                                 "ExecutionRoleArn", "PlacementConstraints", "RequiresCompatibilities", "Cpu",
                                 "Memory"),
}


class Unresolved(str):
    """A value only CloudFormation knows (another resource's id or attribute): compared as its
    expression, which is what an unchanged template gives on both sides."""


class Values:
    """A template's parameters and conditions under one set of parameter values, as CloudFormation
    resolves them for a change set: the values given, else the template's defaults. Refs to
    resources stay Unresolved. Enough for the stack's file systems and its task definition (the
    environment's Fn::Split and Fn::Select), not a general evaluator."""

    def __init__(self, template: dict, given: dict[str, str], region: str) -> None:
        self.template = template
        self.params = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
        # As text, the way CloudFormation keeps every parameter (moto may hold a Number as a number
        # and a CommaDelimitedList as a list).
        self.params.update({k: ",".join(map(str, v)) if isinstance(v, list) else str(v)
                            for k, v in given.items() if k in self.params})
        self.region = region

    def condition(self, name: str) -> bool:
        return bool(self(self.template.get("Conditions", {})[name]))

    def exists(self, logical_id: str) -> bool:
        resource = self.template.get("Resources", {}).get(logical_id)
        return resource is not None and ("Condition" not in resource or self.condition(resource["Condition"]))

    def __call__(self, value: Any) -> Any:  # noqa: C901 - one branch per intrinsic function
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self(v) for k, v in value.items()}
        (k, v), = value.items()
        if k == "Ref":
            if v == "AWS::Region":
                return self.region
            if v == "AWS::NoValue":
                return None
            return self.params[v] if v in self.params else Unresolved(json.dumps(value))
        if k == "Condition":
            return self.condition(v)
        if k == "Fn::If":
            return self(v[1] if self.condition(v[0]) else v[2])
        if k == "Fn::Equals":
            return str(self(v[0])) == str(self(v[1]))
        if k == "Fn::Not":
            return not self(v[0])
        if k == "Fn::And":
            return all(self(x) for x in v)
        if k == "Fn::Or":
            return any(self(x) for x in v)
        if k == "Fn::GetAZs":
            return [f"{self.region}{z}" for z in "abc"]
        if k == "Fn::Split":
            text = self(v[1])
            if isinstance(text, str) and not isinstance(text, Unresolved):
                return text.split(self(v[0]))
            return Unresolved(json.dumps({k: [v[0], text]}, default=str))
        if k == "Fn::Join":
            items = self(v[1])
            if isinstance(items, list) and not any(isinstance(i, Unresolved) or not isinstance(i, str) for i in items):
                return self(v[0]).join(items)
            return Unresolved(json.dumps({k: [v[0], items]}, default=str))
        if k == "Fn::Select":
            items = self(v[1])
            if isinstance(items, list) and not isinstance(items, Unresolved):
                index = int(self(v[0]))
                return items[index] if index < len(items) else Unresolved(json.dumps({k: [index, items]}, default=str))
            return Unresolved(json.dumps({k: [self(v[0]), items]}, default=str))
        if k == "Fn::Sub":
            # Parameters (and the Sub's own variables) are put in; a resource's ${Name} or
            # ${Name.Attr} stays as written, the same on both sides of a change set.
            text, variables = (v, {}) if isinstance(v, str) else (v[0], {n: self(x) for n, x in v[1].items()})
            resolved = True

            def put(m: re.Match) -> str:
                nonlocal resolved
                name = m.group(1)
                if name in variables and isinstance(variables[name], str) and not isinstance(variables[name], Unresolved):
                    return variables[name]
                if name == "AWS::Region":
                    return self.region
                if name in self.params and name not in variables:
                    return self.params[name]
                resolved = False
                return m.group(0)
            out = re.sub(r"\$\{([^}!]+)\}", put, text)
            return out if resolved else Unresolved(json.dumps({k: out}))
        if k.startswith("Fn::"):
            return Unresolved(json.dumps({k: self(v)}, default=str))
        return {k: self(v)}


def references(values: Values, value: Any) -> set[str]:
    """The template's resources that `value` names (Ref, Fn::GetAtt, Fn::Sub), taking only the
    branch of each Fn::If that the conditions choose."""
    resources = values.template.get("Resources", {})
    out: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                walk(x)
            return
        if not isinstance(v, dict):
            return
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                out.update({a} & resources.keys())
                return
            if k == "Fn::GetAtt":
                out.update({(a if isinstance(a, list) else str(a).split("."))[0]} & resources.keys())
                return
            if k == "Fn::If":
                walk(a[1] if values.condition(a[0]) else a[2])
                return
            if k == "Fn::Sub":
                text, names = (a, {}) if isinstance(a, str) else (a[0], a[1])
                for m in re.finditer(r"\$\{([^!}][^}]*)\}", text):
                    name = m.group(1).split(".")[0]
                    if name in resources and name not in names:
                        out.add(name)
                walk(names)
                return
        for x in v.values():
            walk(x)

    walk(value)
    return out


def resource_changes(old: Values, new: Values) -> list[dict[str, str]]:
    """What a change set from `old` (the stack's template and parameters) to `new` does: for each
    resource of a type in CREATE_ONLY, [{"Action": Add|Modify|Remove, "LogicalResourceId",
    "ResourceType", "Replacement": True|False (Modify only)}]; then, as CloudFormation points the
    resources that name a replaced one at its replacement, each of those too: replaced when the
    property that names it is create-only (a mount target of a replaced file system), else
    modified in place (a launch template's user-data, a role's policy)."""
    out = []
    names = list(old.template.get("Resources", {})) + [n for n in new.template.get("Resources", {})
                                                        if n not in old.template.get("Resources", {})]
    for name in names:
        kind = (new.template["Resources"].get(name) or old.template["Resources"][name])["Type"]
        if kind not in CREATE_ONLY:
            continue
        before, after = old.exists(name), new.exists(name)
        if before and not after:
            out.append({"Action": "Remove", "LogicalResourceId": name, "ResourceType": kind})
        elif after and not before:
            out.append({"Action": "Add", "LogicalResourceId": name, "ResourceType": kind})
        elif before and after:
            a = old(old.template["Resources"][name].get("Properties", {}))
            b = new(new.template["Resources"][name].get("Properties", {}))
            if a != b:
                replace = any(a.get(p) != b.get(p) for p in CREATE_ONLY[kind])
                out.append({"Action": "Modify", "LogicalResourceId": name, "ResourceType": kind,
                            "Replacement": "True" if replace else "False"})
    by_name = {c["LogicalResourceId"]: c for c in out}
    replaced = {n for n, c in by_name.items() if c.get("Replacement") == "True"}
    grew = bool(replaced)
    while grew:
        grew = False
        for name, res in new.template.get("Resources", {}).items():
            if name in replaced or not (old.exists(name) and new.exists(name)):
                continue
            hit = {p for p, v in res.get("Properties", {}).items() if references(new, v) & replaced}
            if not hit:
                continue
            change = by_name.setdefault(name, {"Action": "Modify", "LogicalResourceId": name,
                                               "ResourceType": res["Type"], "Replacement": "False"})
            if change not in out:
                out.append(change)
            if hit & set(CREATE_ONLY.get(res["Type"], ())):
                change["Replacement"] = "True"
                replaced.add(name)
                grew = True
    return out
