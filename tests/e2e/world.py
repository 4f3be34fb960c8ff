"""The world an end-to-end story runs in: the real agent binary as its own process, against

- moto behind the test shim (tests/shim/awsshim.py): the hosted zone, the Auto Scaling group
  with its termination hook, and the SNS topic, named as the cloud stack names them;
- the shim's IMDS, which places the instance in the group;
- a game container in dockerd with host networking, whose entrypoint saves on SIGTERM;
- player clients in a network namespace sending real packets over a veth pair.

Shared by the end-to-end tests (tests/e2e/test_stories.py) and `make demo` (tests/demo/demo.py).
Every traffic loop is bounded in count and time, and goes only to the veth address this module
creates.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / "tests" / ".venv" / "bin" / "python"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/cache/container-manager/target"))
AGENT = Path(os.environ.get("AGENT_BIN", TARGET / "debug" / "container-manager-agent"))
IMAGE = "cm-test/busybox:1"

# Names as the cloud stack creates them (cloud/container-manager.yaml).
SERVER = "valheim"
GROUP = f"container-manager-{SERVER}"
HOOK = "container-manager-termination"
TOPIC = f"container-manager-{SERVER}-alerts"
ZONE = "example.test"
RECORD = f"{SERVER}.{ZONE}"
PUBLIC_IP = "203.0.113.10"

# The player network: a veth pair between this host and a netns (test-only addresses).
NETNS = "cme2e-player"
HOST_IF = "cme2e0"
PEER_IF = "cme2e1"
HOST_ADDR = "10.204.0.1"
PEER_ADDR = "10.204.0.2"


def sh(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class Shim:
    """The AWS emulator with the test shim in front of it. `args` go to awsshim.py (the cloud
    twin passes --host)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_PY), str(ROOT / "tests" / "shim" / "awsshim.py"), *args],
            stdin=subprocess.PIPE,  # the shim exits when its stdin closes
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the AWS shim did not start")
        urls = json.loads(line)
        self.aws: str = urls["aws"]
        self.imds: str = urls["imds"]
        self.control: str = urls["control"]
        self.moto: str = urls["moto"]

    def post(self, path: str, body: dict | None = None) -> Any:
        req = urllib.request.Request(
            self.control + path,
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
        return json.loads(data) if data else None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.control + path, timeout=30) as r:
            return json.loads(r.read())

    def ctl(self, command: str, **kw: Any) -> Any:
        return self.post(f"/_shim/ctl/{command}", kw)

    def set_imds(self, **values: Any) -> None:
        self.post("/_shim/imds", values)

    def outage(self, seconds: float) -> None:
        self.post("/_shim/outage", {"seconds": seconds, "mode": "refuse", "imds": False})

    def lifecycle_actions(self) -> list[dict]:
        return self.get("/_shim/lifecycle-actions")

    def requests(self) -> list[dict]:
        return self.get("/_shim/requests")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PlayerNet:
    """A netns with a veth pair to this host; players send real UDP packets from it."""

    def __init__(self) -> None:
        self.close()
        sh("ip", "netns", "add", NETNS)
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF)
        sh("ip", "link", "set", PEER_IF, "netns", NETNS)
        sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{PEER_ADDR}/24", "dev", PEER_IF)
        sh("ip", "netns", "exec", NETNS, "ip", "link", "set", PEER_IF, "up")
        sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
        self._players: list[subprocess.Popen] = []

    def play(self, port: int, rate: float, seconds: float) -> subprocess.Popen:
        """Starts a player sending `rate` packets/s to the server for at most `seconds`."""
        code = (
            "import socket,sys,time\n"
            "p,r,s=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3])\n"
            "k=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "n=int(r*s); end=time.monotonic()+s+1\n"
            "for i in range(n):\n"
            "  if time.monotonic()>end: break\n"
            f"  k.sendto(b'player-input %d'%i,('{HOST_ADDR}',p)); time.sleep(1/r)\n"
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "python3", "-c", code, str(port), str(rate), str(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._players.append(proc)
        return proc

    def stop_players(self) -> None:
        for p in self._players:
            if p.poll() is None:
                p.terminate()
                p.wait(5)
        self._players.clear()

    def close(self) -> None:
        for p in getattr(self, "_players", []):
            if p.poll() is None:
                p.kill()
        sh("ip", "link", "del", HOST_IF, check=False)
        sh("ip", "netns", "del", NETNS, check=False)


class Game:
    """The game container: host networking, the ECS label, a data dir on the host."""

    NAME = "cme2e-game"

    def __init__(self, script: str, data: Path) -> None:
        sh("docker", "rm", "-f", self.NAME, check=False)
        self.data = data
        out = sh(
            "docker", "run", "-d", "--name", self.NAME, "--network", "host",
            "--label", "com.amazonaws.ecs.container-name=game",
            "-v", f"{data}:/data", IMAGE, "-c", script,
        )
        self.id = out.stdout.strip()

    @staticmethod
    def saving_server() -> str:
        """Runs until SIGTERM, then writes the save marker and exits 0."""
        return (
            "trap 'echo sigterm-save >> /data/order; echo world > /data/save-marker; exit 0' TERM; "
            "echo 'server started'; "
            "while true; do sleep 1 & wait $!; done"
        )

    @staticmethod
    def crashing_server(after: float, code: int = 3) -> str:
        return (
            "echo 'loading world'; echo 'players can join'; "
            f"sleep {after}; echo 'fatal: corrupted chunk at 12,-4'; exit {code}"
        )

    def running(self) -> bool:
        out = sh("docker", "inspect", "-f", "{{.State.Running}}", self.NAME, check=False)
        return out.stdout.strip() == "true"

    def exit_code(self) -> int | None:
        out = sh("docker", "inspect", "-f", "{{.State.ExitCode}}", self.NAME, check=False)
        return int(out.stdout.strip()) if out.returncode == 0 else None

    def close(self) -> None:
        sh("docker", "rm", "-f", self.NAME, check=False)


class A2sServer:
    """A game's Steam query port: A2S_INFO with the challenge step, from the protocol docs."""

    def __init__(self, players: int, port: int = 0) -> None:
        self.players = players
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.challenge = b"\x11\x22\x33\x44"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        request = b"\xff\xff\xff\xffTSource Engine Query\x00"
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(1400)
            except socket.timeout:
                continue
            if not data.startswith(request):
                continue
            if data[len(request):] != self.challenge:
                self.sock.sendto(b"\xff\xff\xff\xffA" + self.challenge, peer)
                continue
            reply = b"\xff\xff\xff\xffI\x11" + b"\x00".join(
                [b"E2E Valheim", b"world", b"valheim", b"Valheim", b""]
            )
            # id, players, max players, bots, type, environment, visibility, VAC, version, EDF
            reply += struct.pack("<H", 0) + bytes([self.players, 10, 0]) + b"dl\x00\x00" + b"1.0\x00\x00"
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Agent:
    """The agent binary as its own process, logging JSON lines that the story reads."""

    config: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    events: list[dict] = field(default_factory=list)
    stderr_text: list[str] = field(default_factory=list)
    started_at: float = 0.0
    on_event: Callable[[dict], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [str(AGENT), "run", "--config", str(self.config), "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            with self._lock:
                self.stderr_text.append(line)
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._lock:
                self.events.append(ev)
            if self.on_event:
                self.on_event(ev)

    def named(self, name: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_for(self, name: str, timeout: float, pred: Callable[[dict], bool] = lambda e: True) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            for e in self.named(name):
                if pred(e):
                    return e
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n".join(self.stderr_text[-30:])
        raise AssertionError(f"no {name!r} event within {timeout}s; agent log tail:\n{tail}")

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def signal_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def ts(event: dict) -> float:
    """An event's RFC 3339 timestamp as unix seconds."""
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


@dataclass
class Timing:
    sample_interval: str = "1s"
    idle_after: str = "6s"
    stop_timeout: str = "10s"
    metrics_interval: str = "5s"
    max_uptime: str = "30d"
    stop_on_max_uptime: bool = False
    crashes_before_shutdown: int = 1


class World:
    """One story's world. Use as a context manager; everything is removed afterwards."""

    def __init__(self, timing: Timing | None = None, probe_port: int | None = None, extra: str = "") -> None:
        self.timing = timing or Timing()
        self.tmp = Path(tempfile.mkdtemp(prefix="cme2e-"))
        self.data = self.tmp / "data"
        self.data.mkdir()
        self.shim = Shim()
        self.net = PlayerNet()
        self.state = self.shim.ctl("setup", zone=ZONE, group=GROUP, hook=HOOK, topic=TOPIC, desired=1)
        self.instance_id: str = self.state["instance_ids"][0]
        self.shim.set_imds(**{
            "instance-id": self.instance_id,
            "region": "us-east-1",
            "availability-zone": "us-east-1a",
            "public-ipv4": PUBLIC_IP,
            "target-lifecycle-state": "InService",
        })
        self.shim.ctl("upsert", zone_id=self.state["zone_id"], name=RECORD, rtype="A", ttl=1, value="0.0.0.0")
        self.game: Game | None = None
        self.a2s: A2sServer | None = None
        self.probe_port = probe_port
        self.extra = extra
        self.agent: Agent | None = None

    # --- setup --------------------------------------------------------------------------------

    def config_text(self) -> str:
        t = self.timing
        probe = ""
        if self.probe_port is not None:
            probe = f'[activity.probe]\nkind = "a2s"\naddress = "127.0.0.1:{self.probe_port}"\ntimeout = "500ms"\n'
        return f"""# written by tests/e2e/world.py
[container]
ecs_container_name = "game"
stop_timeout = "{t.stop_timeout}"
pre_stop_command = ["/bin/sh", "-c", "echo prestop >> /data/order; echo saving world"]
crashes_before_shutdown = {t.crashes_before_shutdown}
alert_log_lines = 5

[activity]
interface = "{HOST_IF}"
ports = ["udp:2456-2458"]
min_packets_per_second = 2.0
sample_interval = "{t.sample_interval}"
idle_after = "{t.idle_after}"
boot_grace = "0s"
keep_awake_file = "{self.tmp}/keep-awake"
{probe}
[dns]
hosted_zone_id = "{self.state['zone_id']}"
record_name = "{RECORD}"
ttl = 1
unavailable_ipv4 = "0.0.0.0"

[scaling]
lifecycle_hook = "{HOOK}"
max_uptime = "{t.max_uptime}"
stop_on_max_uptime = {"true" if t.stop_on_max_uptime else "false"}

[metrics]
namespace = "ContainerManager"
interval = "{t.metrics_interval}"

[alerts]
sns_topic_arn = "{self.state['topic_arn']}"
{self.extra}"""

    def agent_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "AWS_ENDPOINT_URL": self.shim.aws,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.shim.imds,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "RUST_LOG": "info",
        })
        env.pop("JOURNAL_STREAM", None)
        return env

    def start_game(self, script: str) -> Game:
        self.game = Game(script, self.data)
        return self.game

    def start_agent(self, config_text: str | None = None, on_event: Callable[[dict], None] | None = None) -> Agent:
        path = self.tmp / "agent.toml"
        path.write_text(config_text if config_text is not None else self.config_text())
        self.agent = Agent(config=path, env=self.agent_env(), on_event=on_event)
        self.agent.start()
        return self.agent

    # --- the emulated group -------------------------------------------------------------------

    def desired_capacity(self) -> int | None:
        g = self.shim.ctl("group", name=GROUP)
        return None if g is None else g.get("desired")

    def record_value(self) -> list[str] | None:
        r = self.shim.ctl("record", zone_id=self.state["zone_id"], name=RECORD, rtype="A")
        return None if r is None else r["values"]

    def alerts(self) -> list[dict]:
        return self.shim.ctl("messages", queue_url=self.state["queue_url"])

    def terminate_when_scaled_in(self, timeout: float) -> float:
        """Plays the Auto Scaling group: once the desired capacity is 0, the instance's target
        lifecycle state turns to Terminated (moto has no Terminating:Wait). Returns when."""
        end = time.time() + timeout
        while time.time() < end:
            if self.desired_capacity() == 0:
                self.shim.set_imds(**{"target-lifecycle-state": "Terminated"})
                return time.time()
            time.sleep(0.2)
        raise AssertionError(f"the desired capacity never reached 0 within {timeout}s")

    def order(self) -> list[str]:
        p = self.data / "order"
        return p.read_text().split() if p.exists() else []

    def close(self) -> None:
        for part in (self.agent, self.a2s, self.game, self.net, self.shim):
            if part is not None:
                try:
                    part.close()
                except Exception:  # noqa: BLE001 - cleanup must go on
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
