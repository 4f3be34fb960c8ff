"""Deploys cloud/container-manager.yaml into the emulator, and plays CloudFormation's part for
what moto's CloudFormation does not do (FACTS.md):

- it runs the custom resources' own code (the HelperFunction's inline source, taken from the
  template) with Create events, and checks the SUCCESS they report to the response URL;
- it applies, from the template's text, what moto drops: the group's lifecycle hooks, the task
  definition's network mode and EFS volumes, and the subscription filter on the query log.

Nothing here edits the template: what the twin runs is what a user deploys.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import io
import importlib.util
import json
import os
import re
import subprocess
import threading
import time
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloud" / "container-manager.yaml"
REGION = "us-east-1"

_spec = importlib.util.spec_from_file_location("cloud_templates", ROOT / "tests" / "cloud" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_cloud = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cloud)
load_template = _cloud.load_template


def example(name: str) -> dict[str, str]:
    path = ROOT / "cloud" / "examples" / f"{name}.json"
    return {p["ParameterKey"]: p["ParameterValue"] for p in json.loads(path.read_text())}


class StackError(RuntimeError):
    pass


@dataclass
class Subscription:
    log_group: str
    pattern: str
    function_logical_id: str


@dataclass
class Deployed:
    """What the twin needs to know about the deployed stack."""

    name: str
    params: dict[str, str]
    template: dict
    physical: dict[str, str]
    outputs: dict[str, str]
    group: str
    cluster: str
    hooks: list[dict[str, Any]]
    subscriptions: list[Subscription]
    custom_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The group's warm pool (AWS::AutoScaling::WarmPool, which moto's CloudFormation lacks):
    # its resolved properties, or None.
    warm_pool: dict[str, Any] | None = None
    # The buckets' policies (AWS::S3::BucketPolicy, which moto's CloudFormation skips), resolved.
    bucket_policies: dict[str, dict] = field(default_factory=dict)
    # The run of cloud/deploy.sh that made it.
    deploy_run: "DeployRun | None" = None
    # The EFS access points, resolved: physical id -> {"fs", "path", "uid", "gid" (PosixUser, or
    # None), "creation": {"uid", "gid", "perm"}}; the twin's EFS follows them.
    access_points: dict[str, dict] = field(default_factory=dict)

    def function_code(self, logical_id: str) -> str:
        return self.template["Resources"][logical_id]["Properties"]["Code"]["ZipFile"]


class _ResponseCatcher:
    """The pre-signed S3 URL a custom resource answers on: records every PUT body."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict] = {}
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                n = int(self.headers.get("Content-Length") or 0)
                catcher.bodies[self.path.strip("/")] = json.loads(self.rfile.read(n))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _client(moto_url: str, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=moto_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class Resolver:
    """Evaluates the intrinsic functions that custom resources and dropped properties use."""

    def __init__(self, template: dict, params: dict[str, str], physical: dict[str, str], moto_url: str,
                 stack: str) -> None:
        self.template = template
        self.params = params
        self.physical = physical
        self.moto_url = moto_url
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
                       "AWS::StackName": stack, "AWS::NoValue": None}

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            if self.template.get("Parameters", {}).get(name, {}).get("Type") == "CommaDelimitedList":
                return self.params[name].split(",") if self.params[name] else [""]
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        default = self.template.get("Parameters", {}).get(name, {}).get("Default")
        if default is not None:
            return str(default)
        raise StackError(f"cannot resolve Ref {name}")

    def getatt(self, logical: str, attr: str) -> str:
        kind = self.template["Resources"][logical]["Type"]
        phys = self.physical[logical]
        if kind == "AWS::Logs::LogGroup" and attr == "Arn":
            (group,) = [g for g in _client(self.moto_url, "logs").describe_log_groups(logGroupNamePrefix=phys)["logGroups"]
                        if g["logGroupName"] == phys]
            return group["arn"]
        if kind == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{phys}"
        if kind == "AWS::Lambda::Function" and attr == "Arn":
            return _client(self.moto_url, "lambda").get_function(FunctionName=phys)["Configuration"]["FunctionArn"]
        raise StackError(f"cannot resolve GetAtt {logical}.{attr}")

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise StackError(f"no condition {name} in the template")
        return bool(self(conditions[name]))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            (k, v), = value.items()
            if k == "Ref":
                return self.ref(v)
            if k == "Fn::GetAtt":
                return self.getatt(v[0], v[1])
            if k == "Fn::Sub":
                text, extra = (v, {}) if isinstance(v, str) else (v[0], {n: self(x) for n, x in v[1].items()})

                def sub(m: re.Match) -> str:
                    key = m.group(1)
                    if key in extra:
                        return str(extra[key])
                    if "." in key:
                        return self.getatt(*key.split(".", 1))
                    return str(self.ref(key))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if k == "Fn::If":
                return self(v[1] if self.condition(v[0]) else v[2])
            if k == "Condition":
                return self.condition(v)
            if k == "Fn::Equals":
                a, b = self(v[0]), self(v[1])
                return str(a) == str(b) if not isinstance(a, list) else a == b
            if k == "Fn::Not":
                return not self(v[0])
            if k == "Fn::And":
                return all(self(x) for x in v)
            if k == "Fn::Or":
                return any(self(x) for x in v)
            if k == "Fn::Join":
                items = self(v[1])
                items = items if isinstance(items, list) else [items]
                return v[0].join(str(x) for x in items if x is not None)
            if k == "Fn::Split":
                return str(self(v[1])).split(v[0])
            if k == "Fn::Select":
                return self(v[1])[int(self(v[0]))]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


DEPLOY = ROOT / "cloud" / "deploy.sh"
VENV_BIN = ROOT / "tests" / ".venv" / "bin"


def aws_cli_env(aws_url: str) -> dict[str, str]:
    """The environment a user's AWS CLI has, pointed at the emulator with the standard variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}", "AWS_ENDPOINT_URL": aws_url,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
    return env


@dataclass
class DeployRun:
    """One run of cloud/deploy.sh: its exit code, output and wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_deploy(aws_url: str, command: str, params: dict[str, str], workdir: Path, *args: str,
               stack: str | None = None, timeout: float = 600) -> DeployRun:
    """Runs the user's deploy command (make deploy calls the same script) against the emulator,
    with the parameters written to a file in the examples' format."""
    path = workdir / "params.json"
    path.write_text(json.dumps([{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()], indent=1))
    extra = ["--stack", stack] if stack else []
    start = time.time()
    r = subprocess.run(["bash", str(DEPLOY), command, str(path), *extra, *args], env=aws_cli_env(aws_url),
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return DeployRun(r.returncode, r.stdout, r.stderr, time.time() - start)


WORLD = ROOT / "cloud" / "world.sh"
CM = ROOT / "cloud" / "cm"


def run_cm(aws_url: str, verb: str, params_file: Path, *args: str, timeout: float = 120) -> DeployRun:
    """Runs the operator's command (cloud/cm) against the emulator, as a user would with the
    parameter file they deployed with."""
    start = time.time()
    r = subprocess.run([str(CM), verb, str(params_file), *args], env=aws_cli_env(aws_url),
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return DeployRun(r.returncode, r.stdout, r.stderr, time.time() - start)


def run_world(aws_url: str, params_file: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 900) -> DeployRun:
    """Runs the operator's world command (cloud/world.sh) against the emulator, as a user would
    with the parameter file they deployed with."""
    start = time.time()
    r = subprocess.run(["bash", str(WORLD), args[0], str(params_file), *args[1:]],
                       env={**aws_cli_env(aws_url), **(env or {})}, capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    return DeployRun(r.returncode, r.stdout, r.stderr, time.time() - start)


def set_by_deploy(key: str) -> bool:
    """Whether the deploy command sets this stack parameter (a user's file does not): the
    package's key (or URL) and sha256, the Discord endpoint's code's sha256, the environment
    file's key, and a game's base's network (BaseVpcId, BaseSubnetA, BaseSubnetB, BaseS3EndpointId)."""
    return key.startswith(("AgentPackage", "BaseVpc", "BaseSubnet", "BaseS3")) or key in (
        "DiscordCodeSha256", "EnvironmentFileKey")


def package_parameters(moto_url: str, stack: str) -> dict[str, str]:
    """What the deploy command set on the stack (`set_by_deploy`)."""
    desc = _client(moto_url, "cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in desc.get("Parameters", []) if set_by_deploy(p["ParameterKey"])}


def deploy(moto_url: str, aws_url: str, params: dict[str, str], workdir: Path, package: Path | None = None,
           stack: str = "valheim") -> Deployed:
    """Deploys the stack into the emulator with the user's deploy command (cloud/deploy.sh), then
    does what moto's CloudFormation leaves out. With `package`, the deploy command puts that
    file into the stack's artifact bucket; without it, `params` name AgentPackageUrl."""
    template = load_template(TEMPLATE)
    # moto gives a CommaDelimitedList parameter left at its default to Fn::Join as one string
    # (so Join goes over its characters); CloudFormation gives the list. Passing each such
    # default explicitly makes moto split it, as it does for given values.
    params = dict(params)
    for name, spec in template.get("Parameters", {}).items():
        if spec.get("Type") == "CommaDelimitedList" and name not in params and "Default" in spec:
            params[name] = str(spec["Default"])
    run = run_deploy(aws_url, "deploy", params, workdir, *(["--package", str(package)] if package else []),
                     stack=stack)
    if run.returncode != 0:
        raise StackError(f"cloud/deploy.sh exited {run.returncode}:\n{run.stderr[-3000:]}")
    cf = _client(moto_url, "cloudformation")
    desc = cf.describe_stacks(StackName=stack)["Stacks"][0]
    if desc["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise StackError(f"stack {stack}: {desc['StackStatus']}: {desc.get('StackStatusReason')}")
    params.update(package_parameters(moto_url, stack))
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cf.list_stack_resources(StackName=stack)["StackResourceSummaries"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    resolve = Resolver(template, params, physical, moto_url, stack)
    resources = template["Resources"]
    # moto returns no outputs after a stack update (the deploy command's second step is one):
    # they are resolved from the template, as CloudFormation would.
    for key, out in template.get("Outputs", {}).items():
        if key not in outputs and ("Condition" not in out or resolve.condition(out["Condition"])):
            try:
                outputs[key] = str(resolve(out["Value"]))
            except (StackError, KeyError):
                pass  # an output the twin cannot resolve (none of its stories reads it)

    # The custom resources, in template order (ServerRecord, then QueryLogging), each run with
    # the HelperFunction's own code, as Lambda would with the Create event CloudFormation sends.
    custom = run_custom_resources(template, resolve, physical, stack, moto_url, aws_url)

    # The group's lifecycle hooks, which moto drops.
    asg_logical = next(k for k, v in resources.items() if v["Type"] == "AWS::AutoScaling::AutoScalingGroup")
    group = physical[asg_logical]
    hooks = [h for h in (resolve(x) for x in resources[asg_logical]["Properties"].get("LifecycleHookSpecificationList", []))
             if h is not None]
    autoscaling = _client(moto_url, "autoscaling")
    _put_hooks(autoscaling, group, hooks)

    # The bucket policies, which moto's CloudFormation skips. They stay with the twin, which
    # evaluates them for the instances' reads (s3gateway.py): in moto, the TLS-only statement
    # would refuse every call, since the emulator is reached over plain HTTP.
    bucket_policies = {}
    for logical, res in resources.items():
        if res["Type"] == "AWS::S3::BucketPolicy" and ("Condition" not in res or resolve.condition(res["Condition"])):
            p = res["Properties"]
            bucket_policies[resolve(p["Bucket"])] = resolve(p["PolicyDocument"])

    subscriptions = subscriptions_of(template, resolve)

    warm_pool = None
    for logical, res in resources.items():
        if res["Type"] == "AWS::AutoScaling::WarmPool" and ("Condition" not in res or resolve.condition(res["Condition"])):
            warm_pool = {k: resolve(v) for k, v in res["Properties"].items()}
            warm_pool.setdefault("PoolState", "Stopped")
            warm_pool.setdefault("MinSize", 0)
            # moto's CloudFormation does not create it; its API keeps the configuration.
            config = {"AutoScalingGroupName": group, "PoolState": warm_pool["PoolState"],
                      "MinSize": int(warm_pool["MinSize"])}
            if warm_pool.get("MaxGroupPreparedCapacity") is not None:
                config["MaxGroupPreparedCapacity"] = int(warm_pool["MaxGroupPreparedCapacity"])
            autoscaling.put_warm_pool(**config)

    access_points = {}
    for logical, res in resources.items():
        if res["Type"] == "AWS::EFS::AccessPoint" and ("Condition" not in res or resolve.condition(res["Condition"])):
            p = {k: resolve(v) for k, v in res["Properties"].items()}
            user = p.get("PosixUser") or {}
            creation = p["RootDirectory"]["CreationInfo"]
            access_points[physical[logical]] = {
                "logical": logical, "fs": p["FileSystemId"], "path": p["RootDirectory"]["Path"],
                "uid": user.get("Uid"), "gid": user.get("Gid"),
                "creation": {"uid": creation["OwnerUid"], "gid": creation["OwnerGid"], "perm": creation["Permissions"]}}

    cluster_logical = next(k for k, v in resources.items() if v["Type"] == "AWS::ECS::Cluster")
    return Deployed(name=stack, params=dict(params), template=template, physical=physical, outputs=outputs,
                    group=group, cluster=physical[cluster_logical], hooks=hooks, subscriptions=subscriptions,
                    custom_resources=custom, warm_pool=warm_pool, deploy_run=run,
                    bucket_policies=bucket_policies, access_points=access_points)



def run_custom_resources(template: dict, resolve: "Resolver", physical: dict[str, str], stack: str, moto_url: str,
                         aws_url: str) -> dict[str, dict[str, Any]]:
    """Each custom resource whose condition holds, in template order, run with its function's own
    code as Lambda would with the Create event CloudFormation sends; its physical id goes into
    `physical`. Raises StackError unless each answers SUCCESS."""
    custom: dict[str, dict[str, Any]] = {}
    catcher = _ResponseCatcher()
    try:
        for logical, res in template["Resources"].items():
            if not res["Type"].startswith("Custom::"):
                continue
            if "Condition" in res and not resolve.condition(res["Condition"]):
                continue
            token = res["Properties"]["ServiceToken"]
            function = token["Fn::GetAtt"][0]
            props = {k: resolve(v) for k, v in res["Properties"].items() if k != "ServiceToken"}
            props["ServiceToken"] = resolve(token)
            env = _function_env(moto_url, physical[function])
            code = template["Resources"][function]["Properties"]["Code"]["ZipFile"]
            module = _load_function(code, f"{function}_{logical}", aws_url, env)
            request_id = str(uuid.uuid4())
            event = {
                "RequestType": "Create", "ServiceToken": props["ServiceToken"],
                "ResponseURL": f"{catcher.url}/{request_id}", "StackId": f"arn:aws:cloudformation:{REGION}:123456789012:stack/{stack}/{uuid.uuid4()}",
                "RequestId": request_id, "LogicalResourceId": logical, "ResourceType": res["Type"],
                "ResourceProperties": props,
            }
            invoke(module, event, moto_url, log_group_of(template, physical, function))
            answer = catcher.bodies.get(request_id)
            if answer is None or answer.get("Status") != "SUCCESS":
                raise StackError(f"custom resource {logical} ({res['Type']}) failed: {answer}")
            physical[logical] = answer["PhysicalResourceId"]
            # What its Delete needs once the stack (and the function in the emulator) is gone.
            custom[logical] = {"event": event, "answer": answer, "code": code, "env": env}
    finally:
        catcher.close()
    return custom


def delete_custom_resources(custom: dict[str, dict[str, Any]], moto_url: str, aws_url: str) -> list[str]:
    """CloudFormation's Delete event to each custom resource of a deleted stack, the last made
    first, run with the function's code and environment as they were (moto's CloudFormation skips
    custom resources, and by now the function is gone with the stack). Returns what each answered."""
    answers = []
    catcher = _ResponseCatcher()
    try:
        for logical, made in reversed(list(custom.items())):
            request_id = str(uuid.uuid4())
            event = {**made["event"], "RequestType": "Delete", "RequestId": request_id,
                     "ResponseURL": f"{catcher.url}/{request_id}",
                     "PhysicalResourceId": made["answer"]["PhysicalResourceId"]}
            module = _load_function(made["code"], f"delete_{logical}", aws_url, made["env"])
            invoke(module, event, moto_url, None)
            answer = catcher.bodies.get(request_id) or {}
            answers.append(f"Delete {logical}: {answer.get('Status')}")
            if answer.get("Status") != "SUCCESS":
                raise StackError(f"custom resource {logical}: Delete failed: {answer}")
    finally:
        catcher.close()
    return answers


def subscriptions_of(template: dict, resolve: "Resolver") -> list[Subscription]:
    """The subscription filters (moto's CloudFormation skips them, and moto's Logs would hand
    every event to Lambda in Docker whatever the pattern): the twin delivers them itself."""
    subscriptions = []
    for res in template["Resources"].values():
        if res["Type"] != "AWS::Logs::SubscriptionFilter":
            continue
        if "Condition" in res and not resolve.condition(res["Condition"]):
            continue
        p = res["Properties"]
        subscriptions.append(Subscription(
            log_group=resolve(p["LogGroupName"]), pattern=resolve(p["FilterPattern"]),
            function_logical_id=p["DestinationArn"]["Fn::GetAtt"][0]))
    return subscriptions


@dataclass
class Base:
    """A deployed base (docs/many-servers.md): its network stack's physical ids, and its wake
    path in us-east-1 (the twin's one region): that stack's template, physical ids and filters."""

    name: str
    network: dict[str, str]
    template: dict
    physical: dict[str, str]
    subscriptions: list[Subscription]

    def function_code(self, logical_id: str) -> str:
        return self.template["Resources"][logical_id]["Properties"]["Code"]["ZipFile"]


def deploy_base(moto_url: str, aws_url: str, name: str, zone_id: str, workdir: Path) -> Base:
    """The user's deploy command with a base's parameter file, then what moto's CloudFormation
    leaves out of the base's wake path: its query logging (a custom resource) and its filter."""
    run = run_deploy(aws_url, "deploy", {"BaseName": name, "HostedZoneId": zone_id}, workdir)
    if run.returncode != 0:
        raise StackError(f"cloud/deploy.sh (base) exited {run.returncode}:\n{run.stderr[-3000:]}")
    cf = _client(moto_url, "cloudformation")

    def physical_of(stack: str) -> dict[str, str]:
        return {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cf.list_stack_resources(StackName=stack)["StackResourceSummaries"]}

    wake_stack = f"container-manager-base-{name}-wake"
    wake_params = {p["ParameterKey"]: p["ParameterValue"]
                   for p in cf.describe_stacks(StackName=wake_stack)["Stacks"][0].get("Parameters", [])}
    physical = physical_of(wake_stack)
    template = load_template(ROOT / "cloud" / "wake-us-east-1.yaml")
    resolve = Resolver(template, wake_params, physical, moto_url, wake_stack)
    run_custom_resources(template, resolve, physical, wake_stack, moto_url, aws_url)
    return Base(name=name, network=physical_of(f"container-manager-base-{name}"), template=template,
                physical=physical, subscriptions=subscriptions_of(template, resolve))


def _put_hooks(autoscaling: Any, group: str, hooks: list[dict[str, Any]]) -> None:
    for h in hooks:
        autoscaling.put_lifecycle_hook(
            AutoScalingGroupName=group, LifecycleHookName=h["LifecycleHookName"],
            LifecycleTransition=h["LifecycleTransition"], HeartbeatTimeout=int(h.get("HeartbeatTimeout", 3600)),
            DefaultResult=h.get("DefaultResult", "ABANDON"))


def follow_launch_template(moto_url: str, deployed: Deployed) -> None:
    """After a stack update: the group's launch template version is the template's
    `!GetAtt LaunchTemplate.LatestVersionNumber`, so CloudFormation moves the group to the new
    version; moto makes the version but leaves the group on the old one."""
    ec2, autoscaling = _client(moto_url, "ec2"), _client(moto_url, "autoscaling")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[deployed.group])["AutoScalingGroups"][0]
    lt = group.get("LaunchTemplate")
    if not lt:
        return  # Spot: a mixed instances policy, which the twin's stories do not update
    latest = ec2.describe_launch_templates(LaunchTemplateIds=[lt["LaunchTemplateId"]])["LaunchTemplates"][0]
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=deployed.group,
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(latest["LatestVersionNumber"])})


def put_hooks(moto_url: str, deployed: Deployed) -> None:
    """The group's lifecycle hooks again (after a stack update, which moto applies without them)."""
    _put_hooks(_client(moto_url, "autoscaling"), deployed.group, deployed.hooks)


def task_definition(moto_url: str, deployed: Deployed, arn: str | None = None) -> dict[str, Any]:
    """The task definition as registered in moto (the stack's, or the revision `arn`), with what
    moto dropped put back from the template: the network mode and the volumes' EFS configuration."""
    resources = deployed.template["Resources"]
    logical = next(k for k, v in resources.items() if v["Type"] == "AWS::ECS::TaskDefinition")
    resolve = Resolver(deployed.template, deployed.params, deployed.physical, moto_url, deployed.name)
    td = _client(moto_url, "ecs").describe_task_definition(taskDefinition=arn or deployed.physical[logical])["taskDefinition"]
    td = copy.deepcopy(td)
    props = resources[logical]["Properties"]
    td["networkMode"] = props.get("NetworkMode", "bridge")
    volumes = resolve(props.get("Volumes", []))
    td["volumes"] = [{"name": v["Name"], "efs": v.get("EFSVolumeConfiguration")} for v in volumes]
    return td


class _TimedLines(io.TextIOBase):
    """What a handler prints, line by line, each with the time it was printed (as Lambda's log
    events carry)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self.partial = ""

    def write(self, text: str) -> int:
        *done, self.partial = (self.partial + text).split("\n")
        self.lines += [(time.time(), line) for line in done if line.strip()]
        return len(text)


def invoke(module: types.ModuleType, event: dict, moto_url: str, log_group: str | None,
           on_line: Callable[[float, str], None] | None = None) -> Any:
    """Calls a function's handler as Lambda would, and writes what it prints to the function's
    log group in the emulator (its LoggingConfig), one event per line at the time it was printed;
    `on_line` also gets each line with its time."""
    out = _TimedLines()
    try:
        with contextlib.redirect_stdout(out):
            return module.handler(event, None)
    finally:
        lines = out.lines + ([(time.time(), out.partial)] if out.partial.strip() else [])
        for t, line in lines if on_line else []:
            on_line(t, line)
        if log_group and lines:
            logs = _client(moto_url, "logs")
            stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
            logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
            logs.put_log_events(logGroupName=log_group, logStreamName=stream,
                                logEvents=[{"timestamp": int(t * 1000), "message": line} for t, line in lines])


def log_group_of(deployed_template: dict, physical: dict[str, str], function: str) -> str | None:
    ref = deployed_template["Resources"][function]["Properties"].get("LoggingConfig", {}).get("LogGroup")
    return physical.get(ref["Ref"]) if isinstance(ref, dict) and "Ref" in ref else None


def _function_env(moto_url: str, function_name: str) -> dict[str, str]:
    conf = _client(moto_url, "lambda").get_function_configuration(FunctionName=function_name)
    # Lambda's variables are strings (moto keeps a Ref'd Number as a number).
    return {k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()}


def _load_function(code: str, name: str, aws_url: str, env: dict[str, str]) -> types.ModuleType:
    """Loads a function's inline code as Lambda's Python runtime would: its environment set,
    boto3 pointed at the emulator through the standard variables."""
    os.environ.update(env)
    os.environ.update({
        "AWS_ENDPOINT_URL": aws_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
    })
    module = types.ModuleType(name)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    return module


def load_function(code: str, name: str, aws_url: str, moto_url: str, function_name: str) -> types.ModuleType:
    return _load_function(code, name, aws_url, _function_env(moto_url, function_name))
