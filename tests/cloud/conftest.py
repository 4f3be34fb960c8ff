"""Shared helpers for the cloud/ tests: the templates, the example parameters, a moto server."""

import hashlib
import json
import os
import shutil
import subprocess
import socket
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "cloud"
MAIN_TEMPLATE = CLOUD / "container-manager.yaml"
WAKE_TEMPLATE = CLOUD / "wake-us-east-1.yaml"
EXAMPLES = sorted((CLOUD / "examples").glob("*.json"))
VENV_BIN = ROOT / "tests" / ".venv" / "bin"


sys.path.insert(0, str(ROOT / "tests" / "shim"))
from cfntemplate import deployable, load_template  # noqa: E402,F401 - the shim reads templates the same way


@pytest.fixture(scope="session")
def main_template():
    return load_template(MAIN_TEMPLATE)


@pytest.fixture(scope="session")
def wake_template():
    return load_template(WAKE_TEMPLATE)


# What cloud/deploy.sh adds to an example: the package it uploaded to the artifact bucket.
PACKAGE_SHA256 = "ab" * 32
PACKAGE_KEY = f"agent/{PACKAGE_SHA256}/container-manager-agent-0.1.0-1.x86_64.rpm"


def example_parameters(path):
    """The example file as the deploy command hands it to CloudFormation: the file, plus the
    package's key and sha256 that cloud/deploy.sh sets, and its environment file's key in place
    of the file (env/<sha256>/game.env, as cloud/deploy.sh uploads it)."""
    items = []
    for item in json.loads(Path(path).read_text()):
        if item["ParameterKey"] == "EnvironmentFile":
            digest = hashlib.sha256((Path(path).parent / item["ParameterValue"]).read_bytes()).hexdigest()
            item = {"ParameterKey": "EnvironmentFileKey", "ParameterValue": f"env/{digest}/game.env"}
        items.append(item)
    return items + [
        {"ParameterKey": "AgentPackageKey", "ParameterValue": PACKAGE_KEY},
        {"ParameterKey": "AgentPackageSha256", "ParameterValue": PACKAGE_SHA256},
    ]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def params(tmp_path):
    """The Valheim example, as a user's own parameter file (for the operator's commands)."""
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    out = tmp_path / "my-valheim.json"
    out.write_text(path.read_text())
    return out


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on 127.0.0.1 for the whole session, with dummy credentials."""
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()
    os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture
def aws(moto_endpoint):
    """boto3 clients against a freshly reset moto."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(
        f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()

    def client(service, region="us-east-1"):
        return boto3.client(service, region_name=region, endpoint_url=moto_endpoint)

    return client


def function_code(template, logical_id):
    return template["Resources"][logical_id]["Properties"]["Code"]["ZipFile"]


def load_function(code, name, env):
    """Runs a function's inline code as a module, with its environment variables set."""
    import types

    os.environ.update(env)
    module = types.ModuleType(name)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    return module


def small_linux_binary(path, text):
    """A real Linux x86_64 program that the deploy's build checks take for an agent (it needs
    nothing newer than glibc 2.34), built here in a second; `text` makes each one different."""
    source = path.with_suffix(".c")
    source.write_text(f'#include <stdio.h>\nint main(void) {{ puts("{text}"); return 0; }}\n')
    subprocess.run(["gcc", "-o", str(path), str(source)], check=True, capture_output=True)
    return path


def rpm_holding(tmp_path, binary, dest="/usr/bin/container-manager-agent"):
    """An x86_64 .rpm (rpmbuild, from the rpm package setup installs) that installs `binary` at
    `dest`, as the agent's package does."""
    top = tmp_path / "rpmbuild"
    (top / "SOURCES").mkdir(parents=True)
    shutil.copy(binary, top / "SOURCES" / "agent")
    spec = top / "agent.spec"
    spec.write_text(f"""Name: container-manager-agent
Version: 0.1.0
Release: 1
Summary: test package
License: MIT
BuildArch: x86_64
%description
test package
%install
mkdir -p %{{buildroot}}{Path(dest).parent}
install -m 0755 %{{_sourcedir}}/agent %{{buildroot}}{dest}
%files
{dest}
""")
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", "--define", "debug_package %{nil}",
                    "--define", "__os_install_post %{nil}", str(spec)], check=True, capture_output=True)
    (built,) = (top / "RPMS" / "x86_64").glob("*.rpm")
    return built


def agent_rpm(tmp_path):
    """An .rpm that passes the deploy's checks of the agent's package (x86_64, a Linux x86_64
    program at /usr/bin/container-manager-agent needing nothing newer than glibc 2.34), small and
    built in a second: for the stack it is only a file in the bucket."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return rpm_holding(tmp_path / "agent-rpm", small_linux_binary(tmp_path / "agent-program", "an agent, for the stack"))
