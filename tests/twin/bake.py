"""Image Builder's part for the baked-image story: runs the build and validate phases of the
component document in cloud/ami-recipe.yaml (its own text, with the parameters a user gives it)
on a container of the twin's "AMI" booted with systemd, commits the result as a new "AMI",
registers it in the emulator's EC2 and writes its id to the recipe's SSM parameter, as the
pipeline's distribution configuration would. moto has no Image Builder; the twin interprets the
three action modules the component uses (CreateFolder, S3Download, ExecuteBash), as AWSTOE
documents them (docs/deploy-sources.md). The test phase (a test instance boots the image) is
left out: the story itself boots it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

import stack

if TYPE_CHECKING:
    from twin import Twin

RECIPE = stack.ROOT / "cloud" / "ami-recipe.yaml"


@dataclass
class Baked:
    ami_id: str
    docker_image: str
    parameter: str
    log: list[str]


def component_document(tw: "Twin", game_image: str = "") -> tuple[dict, dict[str, str]]:
    template = stack.load_template(RECIPE)
    params = {"ServerName": tw.params["ServerName"], "ArtifactBucket": tw.deployed.physical["ArtifactBucket"],
              "AgentPackageKey": tw.params["AgentPackageKey"], "AgentPackageSha256": tw.params["AgentPackageSha256"],
              "GameImage": game_image}
    resolve = stack.Resolver(template, params, {}, tw.shim.moto, "container-manager-ami")
    data = resolve(template["Resources"]["AgentComponent"]["Properties"]["Data"])
    outputs = {k: resolve(v["Value"]) for k, v in template["Outputs"].items() if k == "ImageIdParameter"}
    return yaml.safe_load(data), outputs


def bake(tw: "Twin", game_image: str = "") -> Baked:
    from twin import sh

    doc, outputs = component_document(tw, game_image)
    name = f"{tw.names.prefix}-build-{int(time.time())}"
    s3 = tw.client("s3", direct=True)
    log: list[str] = []
    sh("docker", "create", "--name", name, "--network", "none", "--cap-add", "SYS_ADMIN",
       "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
       "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec",
       "--label", "cm-twin=build", "--label", tw.names.label, "-e", "container=docker", tw.instance_image)
    try:
        sh("docker", "start", name)
        sh("docker", "exec", name, "systemctl", "is-system-running", "--wait", check=False, timeout=60)
        for phase in doc["phases"]:
            if phase["name"] not in ("build", "validate"):
                continue
            for step in phase["steps"]:
                action, inputs = step["action"], step["inputs"]
                if action == "CreateFolder":
                    for i in inputs:
                        sh("docker", "exec", name, "mkdir", "-p", i["path"])
                elif action == "S3Download":
                    for i in inputs:
                        bucket, _, key = i["source"].removeprefix("s3://").partition("/")
                        local = tw.dir / "bake" / Path(i["destination"]).name
                        local.parent.mkdir(exist_ok=True)
                        local.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                        sh("docker", "cp", str(local), f"{name}:{i['destination']}")
                elif action == "ExecuteBash":
                    script = "\n".join(inputs["commands"])
                    r = sh("docker", "exec", name, "bash", "-c", script, check=False, timeout=300)
                    log.append(f"{phase['name']}/{step['name']}: exit {r.returncode}\n{r.stdout}{r.stderr}")
                    if r.returncode != 0:
                        raise RuntimeError(f"component step {phase['name']}/{step['name']} failed:\n{log[-1]}")
                else:
                    raise RuntimeError(f"the twin does not run the action module {action}")
        # Image Builder stops the build instance and snapshots it; the twin commits the file
        # system (docker pauses the container for it; /run and /tmp are tmpfs, as on the instance).
        sh("docker", "exec", name, "sync")
        image = f"cm-twin/ami-baked:{tw.params['AgentPackageSha256'][:12]}-{tw.names.slot}"
        sh("docker", "commit", name, image)
    finally:
        sh("docker", "rm", "-f", name, check=False)
    ec2 = tw.client("ec2", direct=True)
    ami = ec2.register_image(Name=f"container-manager-{tw.params['ServerName']}-baked",
                             RootDeviceName="/dev/xvda", Architecture="x86_64")["ImageId"]
    parameter = outputs["ImageIdParameter"]
    tw.client("ssm", direct=True).put_parameter(Name=parameter, Value=ami, Type="String",
                                                DataType="aws:ec2:image", Overwrite=True)
    tw.amis[ami] = image
    return Baked(ami_id=ami, docker_image=image, parameter=parameter, log=log)
