"""The cloud twin: the deployed system, driven by cloud/container-manager.yaml, on this machine.

    player netns ──DNS──▶ NameServer (198.51.100.1:53) ──query log──▶ LogDelivery
        │                      ▲ records                                   │ filter pattern
        │                      │                                           ▼
        │               moto (behind tests/shim) ◀── SetDesiredCapacity ── wake function's code
        │                      │ desired 0 → 1
        │                      ▼
        └──game packets──▶ instance: a systemd container with its own netns and address, whose
                           user-data (from the launch template) installs the agent over HTTPS;
                           the "ECS agent" (Launcher) starts the task's game container in it.

Every part is a real component or the stack's own code; README.md in this folder lists them, and
what stands in for what. Addresses (slot 0; each twin takes a free slot, and its names and
addresses come from it: `Names`): the bridge `cmtw0br` holds 198.51.100.0/24 (TEST-NET-2, on
interfaces this module creates and removes): .1 is the twin's side (emulator, DNS, package
server), .10 and up are instances (each launch a new address, as a public IP is), .200 the player.
Every loop here is bounded in time.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import http.server
import itertools
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import functionurl  # noqa: E402
import nameserver  # noqa: E402
import s3gateway  # noqa: E402
import stack  # noqa: E402

sys.path.insert(0, str(HERE.parent / "e2e"))
import world  # noqa: E402

ROOT = HERE.parents[1]
VENV_PY = ROOT / "tests" / ".venv" / "bin" / "python"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/cache/container-manager/target"))
AGENT = Path(os.environ.get("AGENT_BIN", TARGET / "debug" / "container-manager-agent"))

ZONE = "example.test"
SERVER = "valheim"
RECORD = f"{SERVER}.{ZONE}"
PACKAGE_PORT = 8443
# S3's regional endpoint: the artifact bucket is <name>.S3_HOST (AWS::S3::Bucket RegionalDomainName).
S3_HOST = "s3.us-east-1.amazonaws.com"
WEBHOOK_PARAMETER = "/container-manager/twin/discord-webhook"
# Where twins on this machine keep their slot locks and their instances' Docker run folders
# (short paths: a unix socket's path is limited to 107 bytes).
RUN_DIR = Path("/run/cm-twin")
SLOTS = 16
# The game image in a Docker data root of its own, made once per machine, that each instance's
# own dockerd starts from (game_image_store).
IMAGE_CACHE = Path(os.environ.get("CM_CACHE", "/var/cache/container-manager")) / "twin-images"


def ecs_env_file(data: bytes) -> dict[str, str]:
    """An environment file's variables as the ECS agent reads them (docs/aws-sources.md §17): line
    by line (a CR before the newline dropped), a line starting with "#" skipped, a line without "="
    skipped, split at its first "=", kept only when the name and the value are both non-empty, a
    later line winning over an earlier one. No trimming, no quotes, no escapes."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8").split("\n"):
        line = line.removesuffix("\r")
        if line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if name and value:
            out[name] = value
    return out


@dataclass(frozen=True)
class Names:
    """Every name and address one twin uses, from its slot: twins in other slots on this machine
    (parallel test workers) use none of them, and a twin's teardown removes only its own."""

    slot: int

    @property
    def prefix(self) -> str:
        return f"cmtw{self.slot}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def net(self) -> str:
        # Documentation and benchmarking ranges (RFC 5737, RFC 2544): never routed anywhere.
        return {0: "198.51.100", 1: "203.0.113"}.get(self.slot, f"198.18.{self.slot}")

    @property
    def twin_ip(self) -> str:
        return f"{self.net}.1"

    @property
    def player_ip(self) -> str:
        return f"{self.net}.200"

    @property
    def net6(self) -> str:
        # With the stack's IPv6 mode: the documentation prefix (RFC 3849), one /64 per twin.
        # (Written as Python's ipaddress writes it: slot 0 is 2001:db8::.)
        return "2001:db8::" if self.slot == 0 else f"2001:db8:{self.slot:x}::"

    @property
    def twin_ip6(self) -> str:
        return f"{self.net6}1"

    @property
    def player_ip6(self) -> str:
        return f"{self.net6}200"

    @property
    def player_ns(self) -> str:
        return f"{self.prefix}-player"

    @property
    def label(self) -> str:
        """On every container the twin makes on the host's dockerd."""
        return f"cm-twin.slot={self.slot}"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / str(self.slot)

    def instance_container(self, iid: str) -> str:
        return f"{self.prefix}-{iid}"

    def veth(self, index: int) -> str:
        return f"{self.prefix}i{index}"


class Slot:
    """A slot number held for the twin's lifetime (an exclusive lock under /run/cm-twin): the
    first free one, so parallel workers each get their own names."""

    def __init__(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        for n in range(SLOTS):
            f = open(RUN_DIR / f"slot-{n}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.file, self.names = f, Names(n)
            return
        raise RuntimeError(f"all {SLOTS} twin slots on this machine are in use ({RUN_DIR}/slot-*.lock)")

    def close(self) -> None:
        self.file.close()


def sh(*args: str, check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


def images() -> tuple[str, str]:
    out = sh(str(HERE / "images.sh"), timeout=900).stdout.split()
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# The twin's own pieces: network, emulator, HTTPS package server
# ---------------------------------------------------------------------------------------------


class Network:
    """The "internet": a bridge with the twin's address, and the player's network namespace,
    named from the twin's slot (Names)."""

    def __init__(self, names: Names) -> None:
        self.names = n = names
        self.close()
        sh("ip", "link", "add", n.bridge, "type", "bridge")
        # A fixed address: a bridge otherwise takes the lowest of its ports' addresses, and a new
        # instance's port would change it under the player's ARP cache (45 s of lost lookups).
        sh("ip", "link", "set", n.bridge, "address", f"02:cf:74:00:{n.slot:02x}:01")
        sh("ip", "addr", "add", f"{n.twin_ip}/24", "dev", n.bridge)
        sh("ip", "link", "set", n.bridge, "up")
        # dockerd sets the FORWARD policy to DROP, and bridged frames pass through it.
        sh("iptables", "-I", "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT", check=False)
        sh("ip", "netns", "add", n.player_ns)
        self.attach_netns(n.player_ns, f"{n.prefix}p", n.player_ip)

    def enable_ipv6(self) -> None:
        """The stack's IPv6 mode: the twin's and the player's IPv6 addresses on the same link."""
        n = self.names
        sh("ip", "-6", "addr", "add", f"{n.twin_ip6}/64", "dev", n.bridge, "nodad")
        ns = ["ip", "netns", "exec", n.player_ns]
        sh(*ns, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=0")
        sh(*ns, "ip", "-6", "addr", "add", f"{n.player_ip6}/64", "dev", "eth0", "nodad")

    def attach_netns(self, netns: str, prefix: str, address: str, address6: str | None = None) -> None:
        """A veth pair: one end on the bridge, the other as eth0 in `netns` (a name or a pid),
        with an IPv4 address and, for the stack's IPv6 mode, an IPv6 one."""
        host, peer = f"{prefix}0", f"{prefix}1"
        sh("ip", "link", "del", host, check=False)
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", netns)
        sh("ip", "link", "set", host, "master", self.names.bridge)
        sh("ip", "link", "set", host, "up")
        ns = ["ip", "netns", "exec", netns] if not netns.isdigit() else ["nsenter", "-t", netns, "-n"]
        sh(*ns, "ip", "link", "set", peer, "name", "eth0")
        sh(*ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        sh(*ns, "ip", "link", "set", "eth0", "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "route", "add", "default", "via", self.names.twin_ip)
        if address6:
            sh(*ns, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=0")
            sh(*ns, "ip", "-6", "addr", "add", f"{address6}/64", "dev", "eth0", "nodad")

    def close(self) -> None:
        n = self.names
        sh("ip", "netns", "del", n.player_ns, check=False)
        sh("ip", "link", "del", f"{n.prefix}p0", check=False)
        while sh("iptables", "-D", "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT",
                 check=False).returncode == 0:
            pass
        # The instances' veths go with their network namespaces; a leftover one with the bridge.
        sh("ip", "link", "del", n.bridge, check=False)


class Shim(world.Shim):
    """moto behind tests/shim/awsshim.py (tests/e2e/world.py), its fronts on the twin's address."""

    def __init__(self, names: Names) -> None:
        super().__init__("--host", names.twin_ip)


class Dockerd:
    """A Docker daemon of the twin's own on this machine: its data root, its socket (in
    `sockdir`), its exec root, its log; optionally inside another process's network namespace."""

    def __init__(self, data: Path, sockdir: Path, exec_root: Path, log: Path) -> None:
        self.data, self.sockdir, self.exec_root, self.log = data, sockdir, exec_root, log
        self.sock = sockdir / "docker.sock"
        self.proc: subprocess.Popen | None = None

    def cmd(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return sh("docker", "-H", f"unix://{self.sock}", *args, check=check, timeout=timeout)

    def start(self, pid: str | None = None) -> float:
        """Starts the daemon (in the network namespace of process `pid`, the instance's init,
        when given); returns the seconds until it answered."""
        self.stop()
        self.sockdir.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(self.log, "a") as log:
            netns = ["nsenter", f"--net=/proc/{pid}/ns/net"] if pid else []
            self.proc = subprocess.Popen(
                [*netns, "dockerd", "--data-root", str(self.data),
                 "--exec-root", str(self.exec_root / "exec"), "--pidfile", str(self.exec_root / "docker.pid"),
                 "-H", f"unix://{self.sock}", "--group", "docker", "--bridge=none", "--iptables=false",
                 "--ip6tables=false", "--ip-masq=false"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        end = t0 + 60
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd ({self.data}) exited {self.proc.returncode}: "
                                   + self.log.read_text()[-800:])
            if self.sock.exists() and self.cmd("version", check=False, timeout=10).returncode == 0:
                return time.time() - t0
            time.sleep(0.05)
        raise RuntimeError(f"dockerd ({self.data}) did not answer within 60 s: {self.log.read_text()[-800:]}")

    def load(self, image: str) -> float | None:
        """A first boot: the instance's data root starts as a copy of this machine's image store
        for `image` (game_image_store: the image loaded once into a data root of its own), its
        read-only layers hard-linked rather than copied (docker never writes into an image's
        layers: a container writes to its own upper layer). Returns the seconds it took, or None
        when the data root was there already (a later start of the same instance)."""
        if self.data.exists():
            return None
        t0 = time.time()
        store = game_image_store(image)
        tmp = self.data.with_name("docker.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for part in store.iterdir():
            # Hard links for the layers; a copy of everything else (the daemon's databases).
            link = ["--link"] if part.name == "overlay2" else []
            if sh("cp", "-a", *link, str(part), str(tmp), check=False).returncode != 0:
                sh("cp", "-a", str(part), str(tmp))  # another file system: a plain copy
        tmp.rename(self.data)
        return time.time() - t0

    def stop(self) -> None:
        """What docker.service does at shutdown: stops what runs (SIGTERM, then SIGKILL after
        each container's stop timeout), then exits."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        """The instance is gone: its daemon and its root volume."""
        self.stop()
        unmount_under(self.data)
        unmount_under(self.exec_root)
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


class InstanceDocker(Dockerd):
    """An instance's own Docker daemon, as the ECS-optimized AMI runs docker.service: a dockerd
    on this machine inside the instance's network namespace (so `--network host` is the
    instance's network), with its own data root (the instance's "root volume": images stay
    across a stop and start) and its own socket, which is the only one mounted into the
    instance (at /cm-twin/docker; ami/boot links /run/docker.sock to it). The twin's "ECS agent"
    runs the game through it; the agent in the instance sees this daemon and nothing else."""

    def __init__(self, names: Names, home: Path, index: int) -> None:
        super().__init__(home / "docker", home / "docker-run", names.run_dir / str(index), home / "dockerd.log")


def game_image_store(image: str) -> Path:
    """A Docker data root that holds `image` and nothing else, made once per machine and image
    (`docker save` from this machine's daemon into a daemon of its own), under a lock so that
    parallel twins do not make it twice. Instances start from a copy of it (InstanceDocker.load)."""
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    store = IMAGE_CACHE / image.replace("/", "_").replace(":", "_")
    with open(IMAGE_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if store.is_dir():
            return store
        for old in IMAGE_CACHE.iterdir():
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix="store-", dir=IMAGE_CACHE))
        daemon = Dockerd(work / "data", work, RUN_DIR / f"store-{os.getpid()}", work / "dockerd.log")
        daemon.start()
        try:
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            sh("docker", "-H", f"unix://{daemon.sock}", "load", stdin=save.stdout, timeout=600)
            if save.wait(60) != 0:
                raise RuntimeError(f"docker save {image} exited {save.returncode}")
        finally:
            daemon.stop()
            unmount_under(daemon.exec_root)
            shutil.rmtree(daemon.exec_root, ignore_errors=True)
        (work / "data").rename(store)
        shutil.rmtree(work, ignore_errors=True)
        return store


def unmount_under(folder: Path) -> None:
    """What a stopped dockerd leaves mounted under its exec root (its network namespace's file)."""
    if not folder.exists():
        return
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(str(folder) + "/")), key=len, reverse=True):
        sh("umount", "-l", point, check=False)


def kill_leftover_daemons(names: Names) -> None:
    """Instance daemons of an earlier twin in this slot that did not close (a killed run)."""
    for pidfile in names.run_dir.glob("*/docker.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            if "dockerd" in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
    unmount_under(names.run_dir)
    shutil.rmtree(names.run_dir, ignore_errors=True)


def trust_in_this_process(ca_pem: bytes) -> None:
    """Adds a CA to the bundle that this process's default TLS contexts load (SSL_CERT_FILE,
    read by OpenSSL each time a context loads its default paths): the system's CAs, plus those
    of every twin in this process (the isolation story runs two)."""
    bundle = Path(tempfile.gettempdir()) / f"cm-twin-cas-{os.getpid()}.pem"
    if not bundle.exists():
        system = Path(ssl.get_default_verify_paths().openssl_cafile)
        bundle.write_bytes(system.read_bytes() if system.is_file() else b"")
    with bundle.open("ab") as f:
        f.write(b"\n" + ca_pem)
    os.environ["SSL_CERT_FILE"] = str(bundle)


class PackageServer:
    """Serves the agent over HTTPS with a certificate from the twin's own CA, as a release page
    would. GET /container-manager-agent is the binary; any other path is a 404. It is also the
    players' chat: POST /hook/<token> records a webhook notification (Discord's 204)."""

    def __init__(self, workdir: Path, binary: Path, twin_ip: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        import ipaddress

        now = dt.datetime.now(dt.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        # A name of its own: a process that trusts several twins finds each CA by its subject.
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"container-manager twin CA {secrets.token_hex(4)}")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, twin_ip)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(twin_ip)),
                                                            x509.DNSName(f"*.{S3_HOST}"), x509.DNSName(S3_HOST)]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        certfile, keyfile = workdir / "server.pem", workdir / "server.key"
        certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        self.binary = binary
        self.sha256 = hashlib.sha256(binary.read_bytes()).hexdigest()
        self.downloads: list[dict] = []
        self.posts: list[dict] = []
        self.hook_token = secrets.token_urlsafe(24)
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                host = (self.headers.get("Host") or "").split(":")[0]
                if host.endswith(f".{S3_HOST}"):
                    self.s3_get(host[: -len(S3_HOST) - 1])
                    return
                ok = self.path.split("?")[0] == "/container-manager-agent"
                served.downloads.append({"t": time.time(), "path": self.path, "client": self.client_address[0],
                                         "status": 200 if ok else 404})
                if not ok:
                    self.send_error(404)
                    return
                data = served.binary.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def s3_get(self, bucket: str) -> None:
                """The artifact bucket through the VPC's gateway endpoint (s3gateway.py)."""
                key = urllib.parse.unquote(self.path.split("?")[0].lstrip("/"))
                if served.s3 is None:
                    status, data, why = 403, b"AccessDenied", "no route to S3 from this VPC"
                else:
                    status, data, why = served.s3.get(bucket, key)
                served.downloads.append({"t": time.time(), "path": self.path, "client": self.client_address[0],
                                         "status": status, "bucket": bucket, "key": key, "why": why})
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if status == 200 else "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                ok = self.path == f"/hook/{served.hook_token}"
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                served.posts.append({"t": time.time(), "path": self.path, "client": self.client_address[0],
                                     "status": 204 if ok else 404, "body": parsed})
                self.send_response(204 if ok else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        # The release page on PACKAGE_PORT, and S3's regional endpoint on 443 (the instance
        # resolves its bucket's name to the twin: Twin._boot).
        self.s3: s3gateway.Gateway | None = None
        self.servers = []
        for port in (PACKAGE_PORT, 443):
            server = http.server.ThreadingHTTPServer((twin_ip, port), Handler)
            server.daemon_threads = True
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        self.url = f"https://{twin_ip}:{PACKAGE_PORT}/container-manager-agent"
        self.hook_url = f"https://{twin_ip}:{PACKAGE_PORT}/hook/{self.hook_token}"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


# ---------------------------------------------------------------------------------------------
# The instance and the group's launches
# ---------------------------------------------------------------------------------------------


@dataclass
class Instance:
    iid: str
    index: int
    ip: str
    container: str
    journal: Path
    state: str = "Pending"
    launched_at: float = 0.0
    game: str | None = None
    game_task: str = ""  # the task definition (ARN) the running game was started from
    game_started: int = 0
    game_exited_at: float | None = None
    ecs_registered: bool = False
    terminated_at: float | None = None
    hook_result: str | None = None
    journal_cursor: str | None = None
    entries: list[dict] = field(default_factory=list)
    # Warm pools: how often it was started (more than once: out of the pool).
    starts: int = 0
    # The stack's IPv6 mode: the instance's IPv6 address ("" without it).
    ip6: str = ""
    # The "AMI" it booted (a docker image).
    image: str = ""
    # Its own Docker daemon (None only in a bare Instance).
    docker: "InstanceDocker | None" = None
    # What each game container printed, kept when the instance's daemon goes.
    game_logs: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.journal.parent

    def dockercmd(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """`docker` against the instance's own daemon."""
        assert self.docker is not None
        return self.docker.cmd(*args, check=check, timeout=timeout)


def journal_fields(entry: dict) -> dict:
    """A journal entry's own fields with lower-case names (the agent's tracing fields come
    through tracing-journald upper-cased, some with an F_ prefix)."""
    out = {}
    for k, v in entry.items():
        if k.startswith("_"):
            continue
        k = k.lower()
        if k.startswith("f_"):
            k = k[2:]
        out[k] = v
    out["t"] = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
    out["unit"] = entry.get("_SYSTEMD_UNIT", "")
    out["ident"] = entry.get("SYSLOG_IDENTIFIER", "")
    return out


class Twin:
    """One deployed stack and everything around it. Use as a context manager."""

    def __init__(self, overrides: dict[str, str] | None = None, example: str = "valheim",
                 on_event: Callable[[dict], None] | None = None,
                 package_path: str | None = None, package_sha256: str | None = None,
                 package: Path | None = None, hook_timeout: float | None = None,
                 before_deploy: Callable[["Twin", dict[str, str]], dict[str, str]] | None = None,
                 base: str | None = None, site: "Twin | None" = None) -> None:
        """`before_deploy(twin, params)` runs in the emulator before the deploy command, and
        returns parameters to add (a world left by an earlier stack, for one).

        Many servers (docs/many-servers.md): `base` deploys a base of that name first (its network,
        and its wake path, whose filter the twin delivers to the base's one wake function), and this
        game into it. `site` is a twin already up (the first game of a base): this one is another
        game, deployed with the deploy command into the same emulator, zone, base and "internet",
        with its own group, instances and game; it closes only what is its own, so close it
        before the site."""
        if not AGENT.exists():
            raise RuntimeError(f"build the agent first: {AGENT} is missing")
        self.on_event = on_event
        # A story that waits out a lifecycle hook's HeartbeatTimeout (nobody completes it: a
        # dead agent) may shorten it; the group then does what the hook's DefaultResult says,
        # as on AWS, only sooner. None: the template's timeout.
        self.hook_timeout = hook_timeout
        self.events: list[dict] = []
        self.service_checked = 0.0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.instances: dict[str, Instance] = {}
        self.players: list[subprocess.Popen] = []
        self.instance_image, self.game_image = images()
        self.amis: dict[str, str] = {}  # baked AMI id -> its docker image (bake.py)
        self.site = site
        self.slot = Slot() if site is None else None
        self.names = site.names if site is not None else self.slot.names
        self.dir = Path(tempfile.mkdtemp(prefix=f"cm-twin-{self.names.slot}-", dir="/var/tmp"))
        try:
            self._setup(overrides, example, package_path, package_sha256, package, before_deploy, base)
        except BaseException:
            self.close()
            raise

    def _setup(self, overrides: dict[str, str] | None, example: str, package_path: str | None,
               package_sha256: str | None, package: Path | None,
               before_deploy: Callable[["Twin", dict[str, str]], dict[str, str]] | None = None,
               base: str | None = None) -> None:
        """Deploys as a user does, with cloud/deploy.sh: by default the agent goes into the
        stack's artifact bucket (`package`, or the built binary; the twin's "AMI" is Debian, so
        the bare binary rather than the .rpm). With `package_path` or `package_sha256` the
        parameters name AgentPackageUrl on the twin's release page instead, as for a user who
        hosts the package."""
        self.efs = self.dir / "efs"
        site = self.site
        if site is None:
            self._cleanup_containers()
            kill_leftover_daemons(self.names)
            self.net = Network(self.names)
            self.shim = Shim(self.names)
            self.package = PackageServer(self.dir, AGENT, self.names.twin_ip)
            self.delivery = nameserver.LogDelivery(self.shim.moto, self.record)
            # What a user has before deploying: a hosted zone, and the container's secret in SSM.
            r53 = self.client("route53", direct=True)
            zone = r53.create_hosted_zone(Name=ZONE, CallerReference=str(time.time()))["HostedZone"]
            self.zone_id = zone["Id"].split("/")[-1]
        else:
            # Another game of the site's base: the same emulator, zone, "internet" and release page.
            self.net, self.shim, self.package, self.delivery = site.net, site.shim, site.package, site.delivery
            self.zone_id = site.zone_id
        self.base: stack.Base | None = site.base if site is not None else None
        if base is not None:
            (self.dir / "base").mkdir()
            self.base = stack.deploy_base(self.shim.moto, self.shim.aws, base, self.zone_id, self.dir / "base")
        params = stack.example(example)
        params.update({
            "HostedZoneId": self.zone_id, "RecordName": RECORD, "ContainerImage": self.game_image,
            "IdleMinutes": "1", "BootGraceMinutes": "0", "StopTimeoutSeconds": "10", "SampleIntervalSeconds": "1",
            # The players' Discord: the URL in SSM as a user puts it there, the receiver above.
            "WebhookKind": "discord", "WebhookUrlParameter": WEBHOOK_PARAMETER,
        })
        hosted = package_path is not None or package_sha256 is not None
        if hosted:
            params.update({
                "AgentPackageUrl": self.package.url if package_path is None else f"https://{self.names.twin_ip}:{PACKAGE_PORT}{package_path}",
                "AgentPackageSha256": package_sha256 or self.package.sha256})
        params.update(overrides or {})
        self.client("ssm", direct=True).put_parameter(  # the second game of a site: the same one
            Name=WEBHOOK_PARAMETER, Value=self.package.hook_url, Type="SecureString", Overwrite=True)
        for k in [k for k in params if k.startswith("Secret")]:
            if "=" in params[k]:
                self.client("ssm", direct=True).put_parameter(
                    Name=params[k].split("=", 1)[1], Value="twin-secret-password", Type="SecureString")
        if before_deploy is not None:
            params.update(before_deploy(self, dict(params)))
        self.deploy_dir = self.dir / "deploy"
        self.deploy_dir.mkdir()
        if self.base is not None:
            params["BaseName"] = self.base.name
        self.deployed = stack.deploy(self.shim.moto, self.shim.aws, params, self.deploy_dir,
                                     package=None if hosted else (package or AGENT), stack=params["ServerName"])
        self.params = self.deployed.params
        network = self.base.network if self.base is not None else self.deployed.physical
        if site is None:
            self.package.s3 = s3gateway.Gateway(self.shim.moto, network["Vpc"], network["PublicRouteTable"],
                                                dict(self.deployed.bucket_policies))
        else:
            self.package.s3.policies.update(self.deployed.bucket_policies)
        # The file systems exist from the deploy on, as EFS's do (empty until a client writes).
        for logical, res in self.deployed.template["Resources"].items():
            if res["Type"] == "AWS::EFS::FileSystem" and logical in self.deployed.physical:
                (self.efs / self.deployed.physical[logical]).mkdir(parents=True, exist_ok=True)
        self.ipv6 = params.get("IPv6") == "true"
        if self.ipv6 and site is None:
            self.net.enable_ipv6()
        self.task = stack.task_definition(self.shim.moto, self.deployed)
        if self.task["networkMode"] != "host":
            raise RuntimeError(f"the twin runs host-networked tasks only, not {self.task['networkMode']!r}")
        # The wake path's filters: this stack's own (one server in us-east-1), or the base's (once,
        # by the twin that deployed the base).
        owned: list[Any] = [(self.deployed, sub) for sub in self.deployed.subscriptions]
        if base is not None and self.base is not None:
            owned += [(self.base, sub) for sub in self.base.subscriptions]
        for owner, sub in owned:
            fn_name = owner.physical[sub.function_logical_id]
            module = stack.load_function(owner.function_code(sub.function_logical_id), sub.function_logical_id,
                                         self.shim.aws, self.shim.moto, fn_name)
            fn_logs = stack.log_group_of(owner.template, owner.physical, sub.function_logical_id)
            self.delivery.subscribe(nameserver.Subscriber(
                log_group=sub.log_group, filter_name=f"{owner.name}-{sub.function_logical_id}",
                pattern=sub.pattern,
                deliver=lambda payload, m=module, g=fn_logs, f=sub.function_logical_id: stack.invoke(
                    m, payload, self.shim.moto, g,
                    on_line=lambda t, line: self.record("function_printed", source="wake", t=t, function=f,
                                                        line=line))))
        if site is None:
            self.dns = nameserver.NameServer(self.shim.moto, self.zone_id, ZONE, self.names.twin_ip, self.delivery,
                                             self.record)
        # The stack's function URLs (the Discord endpoint's, with DiscordPublicKey): logical id -> URL.
        self.urls = functionurl.start(self.deployed, self.shim.moto, self.shim.aws, self.dir / "functions", self.record)
        self.function_urls = {logical: u.url for logical, u in self.urls.items()}
        self.role = self.deployed.physical.get("InstanceRole", "instance-role")
        self.ca_bundle = sh("docker", "run", "--rm", "--network", "none", "--label", self.names.label,
                            "--entrypoint", "cat", self.instance_image,
                            "/etc/ssl/certs/ca-certificates.crt").stdout.encode() + self.package.ca_pem
        # The wake function runs in this process and posts "waking" to the players' webhook, the
        # receiver above: this process trusts the twin's CA, as Lambda's runtime trusts public ones.
        trust_in_this_process(self.package.ca_pem)
        # The instances' addresses come from one counter per "internet".
        self.next_index = site.next_index if site is not None else itertools.count(10)
        self._start(self._watch_group, "launcher")
        self._start(self._watch_journals, "journals")

    # --- the user's deploy command, again ---------------------------------------------------------

    def redeploy(self, package: Path = AGENT, *flags: str, **overrides: str) -> stack.DeployRun:
        """`make deploy` again with the same parameter file (plus `overrides`, and the deploy
        command's `flags`) and a package: the stack is updated, a new package goes into the
        bucket, and the old one leaves it."""
        params = {**self.user_params(), **overrides}
        self.params.update(overrides)
        run = stack.run_deploy(self.shim.aws, "deploy", params, self.deploy_dir, "--package", str(package), *flags)
        if run.returncode != 0:
            raise stack.StackError(f"cloud/deploy.sh exited {run.returncode}:\n{run.stderr[-3000:]}")
        self.params.update(stack.package_parameters(self.shim.moto, self.deployed.name))
        stack.put_hooks(self.shim.moto, self.deployed)  # moto's update drops them again
        stack.follow_launch_template(self.shim.moto, self.deployed)
        self._follow_stack()
        return run

    def _follow_stack(self) -> None:
        """What a stack update changed that the twin's EFS and ECS read: the resources' ids and
        the outputs (a replaced file system, its access points and the task definition have new
        ones), a folder for every file system (an EFS exists from its creation on, empty), and
        the access points as EFS has them."""
        cf = self.client("cloudformation", direct=True)
        name = self.deployed.name
        self.deployed.physical.update({r["LogicalResourceId"]: r["PhysicalResourceId"]
                                       for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]})
        resolve = stack.Resolver(self.deployed.template, self.params, self.deployed.physical, self.shim.moto, name)
        for key, out in self.deployed.template.get("Outputs", {}).items():
            if "Condition" in out and not resolve.condition(out["Condition"]):
                continue
            try:
                self.deployed.outputs[key] = str(resolve(out["Value"]))
            except (stack.StackError, KeyError):
                pass  # as in stack.deploy: an output the twin cannot resolve, which no story reads
        efs = self.client("efs", direct=True)
        for fs in efs.describe_file_systems()["FileSystems"]:
            (self.efs / fs["FileSystemId"]).mkdir(parents=True, exist_ok=True)
        for logical, res in self.deployed.template["Resources"].items():
            ap_id = self.deployed.physical.get(logical)
            if res["Type"] != "AWS::EFS::AccessPoint" or ap_id is None or ap_id in self.deployed.access_points:
                continue
            (ap,) = efs.describe_access_points(AccessPointId=ap_id)["AccessPoints"]
            user, creation = ap.get("PosixUser") or {}, ap["RootDirectory"]["CreationInfo"]
            self.deployed.access_points[ap_id] = {
                "logical": logical, "fs": ap["FileSystemId"], "path": ap["RootDirectory"]["Path"],
                "uid": user.get("Uid"), "gid": user.get("Gid"),
                "creation": {"uid": creation["OwnerUid"], "gid": creation["OwnerGid"], "perm": creation["Permissions"]}}
        # The task definition the game runs is the service's, which the ECS part follows
        # (_follow_service).

    def redeploy_image(self, baked: Any) -> stack.DeployRun:
        """The stack on a baked image (bake.py): ImageId set to the recipe's SSM parameter."""
        return self.redeploy(ImageId=baked.parameter)

    def destroy(self) -> stack.DeployRun:
        """`make destroy` with the same parameter file; once the stack is gone, its custom
        resources get the Delete CloudFormation sends them (the record, and in a single server's
        stack in us-east-1 the zone's query logging), which moto's CloudFormation skips."""
        run = stack.run_deploy(self.shim.aws, "destroy", self.user_params(), self.deploy_dir)
        if run.returncode == 0:
            answers = stack.delete_custom_resources(self.deployed.custom_resources, self.shim.moto, self.shim.aws)
            self.record("custom_resources_deleted", source="cfn", answers=answers)
        return run

    def world(self, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> stack.DeployRun:
        """The operator's world command (cloud/world.sh import|export|backups|restore|shell), with
        the parameter file the deploy command was given."""
        return stack.run_world(self.shim.aws, self.deploy_dir / "params.json", *args, env=env, timeout=timeout)

    def cm(self, verb: str, *args: str, timeout: float = 120) -> stack.DeployRun:
        """The operator's command (cloud/cm VERB PARAMS.json ...), with the deploy's parameter file."""
        return stack.run_cm(self.shim.aws, verb, self.deploy_dir / "params.json", *args, timeout=timeout)

    def user_params(self) -> dict[str, str]:
        """The parameter file as the user wrote it: without what the deploy command sets."""
        return {k: v for k, v in self.params.items() if not stack.set_by_deploy(k)}

    # --- events ---------------------------------------------------------------------------------

    def record(self, event: str, source: str = "twin", t: float | None = None, **fields: Any) -> dict:
        e = {"t": t if t is not None else time.time(), "source": source, "event": event, **fields}
        if source == "twin" and event in ("dns_query", "query_logged"):
            e["source"] = "dns"
        elif source == "twin" and event == "wake_invoked":
            e["source"] = "wake"
        with self.lock:
            self.events.append(e)
        if self.on_event:
            try:
                self.on_event(e)
            except Exception:  # noqa: BLE001 - a narrator must not break the twin
                pass
        return e

    def named(self, event: str, source: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["event"] == event and (source is None or e["source"] == source)]

    def wait_for(self, event: str, timeout: float, source: str | None = None,
                 pred: Callable[[dict], bool] = lambda e: True, after: float = 0.0) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            for e in self.named(event, source):
                if e["t"] >= after and pred(e):
                    return e
            time.sleep(0.1)
        raise AssertionError(f"no {event!r} ({source or 'any source'}) within {timeout}s; last events:\n"
                             + "\n".join(json.dumps(e)[:300] for e in self.events[-25:]))

    def client(self, service: str, direct: bool = False) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.shim.moto if direct else self.shim.aws,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def desired(self) -> int:
        g = self.client("autoscaling", direct=True).describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.deployed.group])["AutoScalingGroups"][0]
        return g["DesiredCapacity"]

    def record_values(self, rtype: str = "A") -> list[str] | None:
        r = self.shim.ctl("record", zone_id=self.zone_id, name=self.params["RecordName"], rtype=rtype)
        return None if r is None else r["values"]

    def alerts(self) -> list[dict]:
        """Messages on the alert topic: the twin subscribes a queue to it, as e-mail would be."""
        return self.shim.ctl("messages", queue_url=self.alert_queue())

    def alert_queue(self) -> str:
        if not hasattr(self, "_queue"):
            sqs, sns = self.client("sqs", direct=True), self.client("sns", direct=True)
            url = sqs.create_queue(QueueName="twin-alerts")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=self.deployed.outputs["AlertTopicArn"], Protocol="sqs", Endpoint=arn,
                          Attributes={"RawMessageDelivery": "false"})
            self._queue = url
        return self._queue

    def metrics(self) -> list[dict]:
        return self.shim.ctl("metrics", namespace=self.params.get("MetricsNamespace", "ContainerManager"))

    def wait_for_players_counted(self, players: int = 1, timeout: float = 90) -> bool:
        """Waits (bounded) until the agent has published a PlayersOnline of at least `players`
        (once a minute), as the operator's commands read it; whether it did."""
        end = time.time() + timeout
        while time.time() < end:
            if any(m["name"] == "PlayersOnline" and any((d["max"] or 0) >= players for d in m["datapoints"])
                   for m in self.metrics()):
                return True
            time.sleep(2)
        return False

    def function_log(self, logical_id: str) -> list[str]:
        """What a function printed, from its log group in the emulator."""
        group = stack.log_group_of(self.deployed.template, self.deployed.physical, logical_id)
        events = self.client("logs", direct=True).filter_log_events(logGroupName=group)["events"]
        return [e["message"] for e in events]

    def lifecycle_actions(self) -> list[dict]:
        return self.shim.get("/_shim/lifecycle-actions")

    # --- players --------------------------------------------------------------------------------

    def player(self, *args: str, name: str | None = None) -> subprocess.Popen:
        """Starts a player in the player netns; its JSON lines become events (source player). It
        looks up `name`, by default this twin's game's."""
        name = name or self.params["RecordName"]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.names.player_ns, str(VENV_PY), str(HERE / "player.py"), "--dns", self.names.twin_ip,
             "--name", name, *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.players.append(proc)
        tag = len(self.players)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue
                t = e.pop("t", None)
                self.record(e.pop("event"), source="player", t=t, player=tag, **e)

        threading.Thread(target=read, daemon=True).start()
        return proc

    # --- the group: launches and terminations ---------------------------------------------------

    def _start(self, fn: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=fn, daemon=True, name=name)
        t.start()
        self.threads.append(t)

    def _watch_group(self) -> None:
        autoscaling = self.client("autoscaling", direct=True)
        last_desired = None
        while not self.stop.is_set():
            try:
                g = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.deployed.group])["AutoScalingGroups"][0]
            except Exception as e:  # noqa: BLE001 - the emulator may be restarting
                self.record("launcher_error", source="asg", error=repr(e))
                time.sleep(0.5)
                continue
            if g["DesiredCapacity"] != last_desired:
                self.record("desired_capacity", source="asg", value=g["DesiredCapacity"])
                last_desired = g["DesiredCapacity"]
            ids = {i["InstanceId"] for i in g["Instances"]}
            for iid in sorted(ids):
                if iid not in self.instances:
                    warm = next((i for i in self.instances.values() if i.state == "Warmed:Stopped"), None)
                    if warm is not None:
                        # Out of the pool: the prepared instance becomes the group's new one.
                        self.shim.post("/_shim/warm", {"group": self.deployed.group, "instance_id": warm.iid})
                        del self.instances[warm.iid]
                        warm.iid = iid
                        warm.state = "Pending"
                        self.instances[iid] = warm
                        self._start(lambda inst=warm, g=g: self._launch(inst, g), f"start-{iid}")
                        continue
                    inst = self._new_instance(iid)
                    self._start(lambda inst=inst, g=g: self._launch(inst, g), f"launch-{iid}")
            for inst in list(self.instances.values()):
                if inst.state in ("Pending", "Pending:Wait", "InService") and inst.iid not in ids and inst.launched_at:
                    inst.state = "Terminating:Wait"
                    self._start(lambda inst=inst: self._terminate(inst), f"terminate-{inst.iid}")
                elif inst.state in ("InService", "Pending:Wait", "Warmed:Pending", "Warmed:Pending:Wait"):
                    self._ecs_daemon(inst)
            self._fill_pool(g)
            time.sleep(0.2)

    def _new_instance(self, iid: str) -> Instance:
        index = next(self.next_index)
        home = self.dir / "instances" / iid
        inst = Instance(iid=iid, index=index, ip="", container=self.names.instance_container(iid),
                        journal=home / "journal", docker=InstanceDocker(self.names, home, index))
        inst.ip = f"{self.names.net}.{inst.index}"
        inst.ip6 = f"{self.names.net6}{inst.index}" if self.ipv6 else ""
        self.instances[iid] = inst
        return inst

    def _fill_pool(self, group: dict) -> None:
        """The warm pool: max(MinSize, MaxGroupPreparedCapacity (the group's max) - desired)
        prepared instances. The twin fills it only while no other instance runs (AWS fills it at
        once): the warm-pool stories are written to that order."""
        pool = self.deployed.warm_pool
        if not pool:
            return
        prepared = int(pool.get("MaxGroupPreparedCapacity") or group["MaxSize"])
        target = max(int(pool.get("MinSize", 0)), prepared - group["DesiredCapacity"])
        warm = [i for i in self.instances.values() if i.state.startswith("Warmed:")]
        others = [i for i in self.instances.values() if i.state != "Terminated" and not i.state.startswith("Warmed:")]
        if len(warm) < target and not others:
            inst = self._new_instance("i-" + os.urandom(9).hex()[:17])
            self._pool_state(inst, "Warmed:Pending")
            self._start(lambda inst=inst, g=group: self._launch(inst, g), f"warm-{inst.iid}")

    def _pool_state(self, inst: Instance, state: str) -> None:
        """A warm-pool state, also shown in DescribeWarmPool (through the shim)."""
        inst.state = state
        self.shim.post("/_shim/warm", {"group": self.deployed.group, "instance_id": inst.iid, "state": state})

    def _launch_hook(self) -> dict | None:
        return next((h for h in self.deployed.hooks if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"), None)

    def _wait_hook(self, inst: Instance, hook: dict, since: float) -> str:
        """Waits for CompleteLifecycleAction on `hook` for the instance, or the heartbeat timeout."""
        timeout = int(hook.get("HeartbeatTimeout", 3600))
        if self.hook_timeout is not None:
            timeout = min(timeout, self.hook_timeout)
        deadline = since + timeout
        while not self.stop.is_set():
            for a in self.lifecycle_actions():
                if a["instance_id"] != inst.iid or a["time"] < since or a["hook"] != hook["LifecycleHookName"]:
                    continue
                if a["action"] == "RecordLifecycleActionHeartbeat":
                    deadline = max(deadline, a["time"] + timeout)
                elif a["action"] == "CompleteLifecycleAction":
                    return a["result"]
            if time.time() > deadline:
                return f"{hook.get('DefaultResult', 'ABANDON')} (heartbeat timeout)"
            time.sleep(0.2)
        return "twin stopped"

    def _launch(self, inst: Instance, group: dict) -> None:
        """A launch (into service or into the pool), or a start out of the pool."""
        since = time.time()
        inst.launched_at = since
        into_pool = inst.state == "Warmed:Pending"
        from_pool = inst.starts > 0
        if from_pool:
            # A stopped instance gets a new public address at every start.
            inst.index = next(self.next_index)
            inst.ip = f"{self.names.net}.{inst.index}"
            inst.ip6 = f"{self.names.net6}{inst.index}" if self.ipv6 else ""
        self.record("instance_launching", source="asg", instance=inst.iid, ip=inst.ip, warm=from_pool,
                    into_pool=into_pool)
        try:
            self._boot(inst, group, target="Warmed:Stopped" if into_pool else "InService")
            hook = self._launch_hook()
            if hook is not None:
                if into_pool:
                    self._pool_state(inst, "Warmed:Pending:Wait")
                else:
                    inst.state = "Pending:Wait"
                result = self._wait_hook(inst, hook, since)
                self.record("launch_hook_done", source="asg", instance=inst.iid, result=result, into_pool=into_pool)
            if into_pool:
                # Warmed:Pending:Proceed -> Warmed:Stopped: EC2 stops it (the OS shuts down).
                self._power_off(inst)
                self._pool_state(inst, "Warmed:Stopped")
                self.record("instance_warmed", source="asg", instance=inst.iid)
            else:
                inst.state = "InService"
                self.record("instance_in_service", source="asg", instance=inst.iid, ip=inst.ip, warm=from_pool)
        except Exception as e:  # noqa: BLE001 - reported, and the story fails on it
            self.record("launch_failed", source="asg", instance=inst.iid, error=repr(e))

    def _boot(self, inst: Instance, group: dict, target: str) -> None:
        inst.starts += 1
        self.shim.post("/_shim/imds", {
            "source": inst.ip, "instance-id": inst.iid, "region": "us-east-1", "availability-zone": "us-east-1a",
            "public-ipv4": inst.ip, "ipv6": inst.ip6 or None, "target-lifecycle-state": target, "role": self.role})
        self._boot_clock(inst)
        if inst.starts > 1:
            # The same root volume: the agent, the images and the user-data's traces stay.
            sh("docker", "start", inst.container)
            self._instance_up(inst)
            self.record("instance_started", source="asg", instance=inst.iid, ip=inst.ip, warm=True)
            return
        ec2 = self.client("ec2", direct=True)
        lt = group["LaunchTemplate"]
        version = ec2.describe_launch_template_versions(
            LaunchTemplateId=lt["LaunchTemplateId"], Versions=[str(lt.get("Version", "$Latest"))])["LaunchTemplateVersions"][0]
        user_data = base64.b64decode(version["LaunchTemplateData"]["UserData"])
        # The launch template's AMI: a baked one (bake.py), or the twin's stock "ECS AMI".
        inst.image = self.amis.get(version["LaunchTemplateData"].get("ImageId", ""), self.instance_image)
        inst.journal.mkdir(parents=True, exist_ok=True)
        files = self.dir / "instances" / inst.iid / "files"
        (files / "etc/systemd/system.conf.d").mkdir(parents=True, exist_ok=True)
        # The "AMI" reaches the emulator through the SDKs' standard variables (it has no route to
        # AWS), for every service it starts: the user-data's CLI and the agent alike.
        (files / "etc/systemd/system.conf.d/cm-twin.conf").write_text(
            "[Manager]\n"
            f'DefaultEnvironment="AWS_ENDPOINT_URL={self.shim.aws}" '
            f'"AWS_EC2_METADATA_SERVICE_ENDPOINT={self.shim.imds}/"\n')
        (files / "ca-certificates.crt").write_bytes(self.ca_bundle)
        (files / "user-data").write_bytes(user_data)
        # The twin's EFS for amazon-efs-utils' stand-in (ami/mount.efs): the host folders, and
        # the stack's access points, as the stack has them now (an update in a deploy command
        # that boots instances itself, --replace-world's, may have replaced them).
        self.efs.mkdir(parents=True, exist_ok=True)
        self._follow_stack()
        (files / "efs.json").write_text(json.dumps({"root": "/cm-twin/efs", "access_points": self.deployed.access_points}))
        # The VPC's resolver answers the bucket's regional name, and its gateway endpoint carries
        # the request: here both lead to the twin's S3 front (s3gateway.py).
        bucket = self.deployed.physical.get("ArtifactBucket")
        hosts = ["--add-host", f"{bucket}.{S3_HOST}:{self.names.twin_ip}"] if bucket else []
        sh("docker", "create", "--name", inst.container, "--hostname", "ip-" + inst.ip.replace(".", "-"),
           *hosts, "--network", "none", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
           "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
           "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
           "-v", f"{inst.docker.sockdir}:/cm-twin/docker", "-v", f"{inst.journal}:/var/log/journal",
           "-v", f"{self.efs}:/cm-twin/efs", "-v", f"{self._timens(inst)}:/cm-twin/timens:ro", "--device", "/dev/fuse",
           "--label", "cm-twin=instance", "--label", self.names.label, "-e", "container=docker", inst.image)
        self.record("boot_step", source="asg", instance=inst.iid, step="created")
        sh("docker", "cp", str(files / "etc/systemd/system.conf.d"), f"{inst.container}:/etc/systemd/")
        sh("docker", "cp", str(files / "ca-certificates.crt"), f"{inst.container}:/etc/ssl/certs/ca-certificates.crt")
        sh("docker", "cp", str(files / "user-data"), f"{inst.container}:/var/lib/cloud/instance/user-data")
        sh("docker", "cp", str(files / "efs.json"), f"{inst.container}:/etc/cm-twin-efs.json")
        sh("docker", "start", inst.container)
        self.record("boot_step", source="asg", instance=inst.iid, step="started")
        self._instance_up(inst)
        self.record("instance_started", source="asg", instance=inst.iid, ip=inst.ip, warm=False)

    def _instance_up(self, inst: Instance) -> None:
        """The started container becomes a booting instance: its own dockerd in its network
        namespace (its data root, on a first boot, a copy of this machine's image store), then
        its network card; ami/boot waits for the card before it boots systemd, so the daemon and
        the image are there before any service, as docker.service and a cached image would be."""
        assert inst.docker is not None
        pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", inst.container).stdout.strip()
        loaded = inst.docker.load(self.game_image)
        if loaded is not None:
            self.record("image_loaded", source="asg", instance=inst.iid, image=self.game_image,
                        seconds=round(loaded, 3))
        up = inst.docker.start(pid)
        self.record("instance_dockerd_up", source="asg", instance=inst.iid, seconds=round(up, 3))
        self.net.attach_netns(pid, self.names.veth(inst.index), inst.ip, inst.ip6 or None)

    def _timens(self, inst: Instance) -> Path:
        return inst.home / "timens"

    def _boot_clock(self, inst: Instance) -> None:
        """A time namespace whose CLOCK_BOOTTIME starts at zero now, for the instance's systemd
        (ami/boot enters it): on EC2, /proc/uptime counts from the instance's boot, and here the
        kernel is the host's, up for hours. Made again at each start, as a stopped and started
        instance boots again. The container cannot make it itself (writing the offsets needs
        CAP_SYS_TIME, which would let it set the host's clock)."""
        path = self._timens(inst)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_clock(inst)
        path.touch()
        with open("/proc/uptime") as f:
            up = int(float(f.read().split()[0]))
        sh("unshare", f"--time={path}", "--boottime", f"-{up}", "true")

    def _drop_clock(self, inst: Instance) -> None:
        path = self._timens(inst)
        while sh("umount", str(path), check=False).returncode == 0:
            pass

    def _follow_service(self, now: bool = False) -> None:
        """ECS's part after a deploy (at most every 3 s, or `now`, before a task starts): the
        service's task definition as it is now. A new revision is what the next task starts from,
        and a running task of an older one is replaced at once (docs/aws-sources.md §16)."""
        if not now and time.time() - self.service_checked < 3:
            return
        self.service_checked = time.time()
        try:
            (svc,) = self.client("ecs", direct=True).describe_services(
                cluster=self.deployed.cluster, services=["game"])["services"]
        except Exception:  # noqa: BLE001 - the emulator busy: the next round asks again
            return
        arn = svc.get("taskDefinition", "")
        if arn and arn != self.task.get("taskDefinitionArn"):
            self.task = stack.task_definition(self.shim.moto, self.deployed, arn=arn)
            self.record("service_updated", source="ecs", revision=self.task.get("revision"))

    def _ecs_daemon(self, inst: Instance) -> None:
        """The ECS agent's part: once the instance has joined the cluster (its ecs.config names
        it), run the DAEMON service's task, and start it again after it stops. A new revision of
        the task definition replaces the running task: with one task per instance and
        MinimumHealthyPercent 0, the old one is stopped first, with SIGTERM and its stopTimeout
        (no pre-stop command: ECS knows none), then the new one starts."""
        self._follow_service()
        if inst.game is not None and inst.game_exited_at is None and inst.game_task \
                and inst.game_task != self.task.get("taskDefinitionArn"):
            (c,) = self.task["containerDefinitions"]
            self.record("task_replaced", source="ecs", instance=inst.iid, container=inst.game,
                        revision=self.task.get("revision"))
            inst.dockercmd("stop", "-t", str(c.get("stopTimeout", 30)), inst.game, check=False)
        if inst.game is None or inst.game_exited_at is not None:
            if inst.game_exited_at is not None and time.time() - inst.game_exited_at < 5:
                return
            conf = sh("docker", "exec", inst.container, "cat", "/etc/ecs/ecs.config", check=False)
            lines = conf.stdout.splitlines()
            if conf.returncode != 0 or f"ECS_CLUSTER={self.deployed.cluster}" not in lines:
                return
            # ECS_WARM_POOLS_CHECK=true: the ECS agent registers only once IMDS says InService
            # (docs/warm-pool-sources.md §4); without it, it would run the task in the pool too.
            if "ECS_WARM_POOLS_CHECK=true" in lines and inst.state != "InService":
                return
            if inst.game is None and not inst.ecs_registered:
                inst.ecs_registered = True
                self.record("ecs_registered", source="ecs", instance=inst.iid, cluster=self.deployed.cluster)
            self._run_task(inst)
            return
        state = inst.dockercmd("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", inst.game,
                               check=False).stdout.split()
        if state and state[0] == "false":
            inst.game_exited_at = time.time()
            self.record("task_stopped", source="ecs", instance=inst.iid, container=inst.game, exit_code=int(state[1]))

    def _run_task(self, inst: Instance) -> None:
        self._follow_service(now=True)
        (c,) = self.task["containerDefinitions"]
        env = {e["name"]: e["value"] for e in c.get("environment", []) if e}
        ssm = self.client("ssm", direct=True)
        for s in c.get("secrets", []):
            if s:
                try:
                    env[s["name"]] = ssm.get_parameter(Name=s["valueFrom"], WithDecryption=True)["Parameter"]["Value"]
                except Exception as e:  # noqa: BLE001 - ECS fails the task the same way
                    self.record("task_failed", source="ecs", instance=inst.iid,
                                error=f"ResourceInitializationError: unable to pull secrets: {e}")
                    inst.game_exited_at = time.time()
                    return
        # The environment files, read from S3 as the ECS agent reads them (docs/aws-sources.md §17):
        # the file's variables first, then the container's own environment over them.
        files: dict[str, str] = {}
        for f in c.get("environmentFiles", []):
            try:
                files.update(ecs_env_file(self._s3_object(f["value"])))
            except Exception as e:  # noqa: BLE001 - ECS fails the task the same way
                self.record("task_failed", source="ecs", instance=inst.iid,
                            error=f"ResourceInitializationError: failed to download env files: {e}")
                inst.game_exited_at = time.time()
                return
        env = {**files, **env}
        # A private registry's login: the ECS agent reads the secret before it pulls the image
        # (docs/aws-sources.md §19); the twin's images are on the instance already, so no pull follows.
        creds = (c.get("repositoryCredentials") or {}).get("credentialsParameter")
        if creds:
            try:
                login = json.loads(self.client("secretsmanager", direct=True).get_secret_value(SecretId=creds)["SecretString"])
                if not (isinstance(login, dict) and login.get("username") and login.get("password")):
                    raise ValueError("the secret holds no username and password")
            except Exception as e:  # noqa: BLE001 - ECS fails the task the same way
                self.record("task_failed", source="ecs", instance=inst.iid,
                            error=f"ResourceInitializationError: unable to pull secrets or registry auth: {e}")
                inst.game_exited_at = time.time()
                return
            self.record("registry_login", source="ecs", instance=inst.iid, username=login["username"])
        env.setdefault("DATA_DIR", c["mountPoints"][0]["containerPath"] if c.get("mountPoints") else "/data")
        volumes = {v["name"]: v for v in self.task["volumes"]}
        mounts = []
        for m in c.get("mountPoints", []):
            folder = self.efs_folder(volumes[m["sourceVolume"]]["efs"])
            mounts += ["-v", f"{folder}:{m['containerPath']}"]
        inst.game_started += 1
        # The ECS agent's name for a task's container, on the instance's own daemon, in the
        # instance's network namespace (the daemon's "host").
        name = f"ecs-{self.task['family']}-{self.task.get('revision', 1)}-{c['name']}-{inst.game_started}"
        args = ["run", "-d", "--name", name, "--network", "host",
                "--label", f"com.amazonaws.ecs.container-name={c['name']}",
                "--label", f"com.amazonaws.ecs.cluster={self.deployed.cluster}",
                "--label", f"com.amazonaws.ecs.task-definition-family={self.task['family']}",
                "--label", "cm-twin=game", "--stop-timeout", str(c.get("stopTimeout", 30)), *mounts]
        # As the ECS agent gives them to Docker (docs/aws-sources.md §15).
        for key, flag in (("memoryReservation", "--memory-reservation"), ("memory", "--memory"), ("cpu", "--cpu-shares")):
            if c.get(key):
                args += [flag, f"{c[key]}m" if key.startswith("memory") else str(c[key])]
        for u in c.get("ulimits") or []:
            if u:
                args += ["--ulimit", f"{u['name']}={u['softLimit']}:{u['hardLimit']}"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        # ECS gives Docker the entry point and the command as lists; the CLI takes the entry point's
        # first word, and the rest of it then the command after the image: the same exec.
        entry, command = c.get("entryPoint") or [], c.get("command") or []
        if entry:
            args += ["--entrypoint", entry[0]]
        inst.dockercmd("rm", "-f", name, check=False)
        # The ECS agent pulls the image first (ECS_IMAGE_PULL_BEHAVIOR=prefer-cached: only when
        # it is not on the instance); a pull that fails stops the task with
        # CannotPullContainerError and no container, and the service starts a new task later
        # (docs/aws-sources.md, "A task that cannot start").
        if inst.dockercmd("image", "inspect", c["image"], check=False).returncode != 0:
            pull = inst.dockercmd("pull", c["image"], check=False, timeout=300)
            if pull.returncode != 0:
                self.record("task_failed", source="ecs", instance=inst.iid,
                            error=f"CannotPullContainerError: {pull.stderr.strip()[-400:]}")
                inst.game_exited_at = time.time()
                return
        inst.dockercmd(*args, c["image"], *entry[1:], *command)
        inst.game = name
        inst.game_task = self.task.get("taskDefinitionArn", "")
        inst.game_exited_at = None
        self.record("task_started", source="ecs", instance=inst.iid, container=name)

    def _s3_object(self, arn: str) -> bytes:
        bucket, _, key = arn.split(":::", 1)[1].partition("/")
        return self.client("s3", direct=True).get_object(Bucket=bucket, Key=key)["Body"].read()

    def _terminate(self, inst: Instance) -> None:
        group = self.deployed.group
        hook = next((h for h in self.deployed.hooks if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"), None)
        entered = time.time()
        self.record("instance_terminating", source="asg", instance=inst.iid, state="Terminating:Wait" if hook else "Terminating")
        if hook is not None:
            self.shim.post("/_shim/terminating", {"group": group, "instance_id": inst.iid, "state": "Terminating:Wait"})
            self.shim.post("/_shim/imds", {"source": inst.ip, "target-lifecycle-state": "Terminated"})
            result = self._wait_hook(inst, hook, entered)
            inst.hook_result = result
            self.record("lifecycle_hook_done", source="asg", instance=inst.iid, result=result)
            self.shim.post("/_shim/terminating", {"group": group, "instance_id": inst.iid, "state": "Terminating:Proceed"})
        inst.state = "Terminating:Proceed"
        self._shutdown(inst)
        self.shim.post("/_shim/terminating", {"group": group, "instance_id": inst.iid})
        self.shim.post("/_shim/imds", {"source": inst.ip, "forget": True})
        inst.state = "Terminated"
        inst.terminated_at = time.time()
        self.record("instance_terminated", source="asg", instance=inst.iid)

    def _power_off(self, inst: Instance) -> None:
        """An EC2 stop or termination: the OS shuts down (systemd stops every service, so the
        agent's stop path runs), then Docker stops what containers are left, as docker.service
        would. The instance's root file system stays (a stopped instance keeps its volume)."""
        sh("docker", "exec", inst.container, "systemctl", "poweroff", "--no-block", check=False)
        r = sh("docker", "wait", inst.container, check=False, timeout=200)
        if r.returncode != 0:
            sh("docker", "kill", inst.container, check=False)
        self._read_journal(inst)
        if inst.game is not None:
            inst.dockercmd("stop", inst.game, check=False, timeout=200)
            self._keep_game_logs(inst)
            inst.dockercmd("rm", "-f", inst.game, check=False)
            inst.game, inst.game_exited_at = None, None
        self._keep_game_logs(inst)
        if inst.docker is not None:
            inst.docker.stop()

    def _keep_game_logs(self, inst: Instance) -> None:
        """The game containers' output, kept past the instance's daemon (stories read it after
        the instance is gone, as one reads a task's CloudWatch log)."""
        if inst.docker is None or inst.docker.proc is None:
            return
        names = inst.dockercmd("ps", "-a", "--format", "{{.Names}}", "--filter", "label=cm-twin=game",
                               check=False).stdout.split()
        for name in names:
            r = inst.dockercmd("logs", name, check=False)
            if r.returncode == 0:
                inst.game_logs[name] = r.stdout

    def _shutdown(self, inst: Instance) -> None:
        self._power_off(inst)
        sh("docker", "rm", "-f", inst.container, check=False)
        if inst.docker is not None:
            inst.docker.remove()

    # --- the instances' journals ----------------------------------------------------------------

    def _read_journal(self, inst: Instance) -> None:
        if not any(inst.journal.rglob("*.journal")):
            return
        args = ["journalctl", "-D", str(inst.journal), "-o", "json", "--no-pager"]
        if inst.journal_cursor:
            args.append(f"--after-cursor={inst.journal_cursor}")
        r = sh(*args, check=False)
        for line in r.stdout.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            inst.journal_cursor = entry.get("__CURSOR", inst.journal_cursor)
            f = journal_fields(entry)
            inst.entries.append(f)
            if f["ident"] == "container-manager-agent" and "event" in f:
                fields = {k: v for k, v in f.items() if k not in ("t", "event", "unit", "ident")}
                self.record(f["event"], source="agent", t=f["t"], instance=inst.iid, **fields)
            elif f["unit"] == "cloud-final.service" or f["ident"] in ("run-user-data", "cloud-final"):
                self.record("user_data_output", source="instance", t=f["t"], instance=inst.iid,
                            message=f.get("message", ""))

    def _watch_journals(self) -> None:
        while not self.stop.is_set():
            for inst in list(self.instances.values()):
                if inst.state in ("InService", "Terminating:Wait", "Pending", "Pending:Wait", "Warmed:Pending",
                                  "Warmed:Pending:Wait"):
                    try:
                        self._read_journal(inst)
                    except Exception as e:  # noqa: BLE001
                        self.record("journal_error", source="twin", error=repr(e))
            time.sleep(0.5)

    def journal(self, iid: str, unit: str | None = None) -> list[dict]:
        inst = self.instances[iid]
        if inst.state not in ("Terminated",):
            self._read_journal(inst)
        return [e for e in inst.entries if unit is None or e["unit"] == unit]

    def uptime(self, inst: Instance, unit: str = "container-manager-agent.service") -> float:
        """The instance's /proc/uptime as the unit's main process reads it (the agent's
        max_uptime rests on it): seconds since the instance booted, as on EC2."""
        pid = sh("docker", "exec", inst.container, "systemctl", "show", "-p", "MainPID", "--value",
                 unit).stdout.strip()
        if not pid or pid == "0":
            raise AssertionError(f"{unit} is not running on {inst.iid}")
        # Read from the host: inside, the hardened unit's process is not root's to inspect.
        init = sh("docker", "inspect", "-f", "{{.State.Pid}}", inst.container).stdout.strip()
        pidns = os.readlink(f"/proc/{init}/ns/pid")
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                nspid = next(line.split()[1:] for line in status.read_text().splitlines()
                             if line.startswith("NSpid:"))
                if nspid[-1] != pid or os.readlink(status.parent / "ns/pid") != pidns:
                    continue
            except (OSError, StopIteration):
                continue
            out = sh("nsenter", "--target", status.parent.name, "--time", "cat", "/proc/uptime").stdout
            return float(out.split()[0])
        raise AssertionError(f"{unit} (pid {pid} on {inst.iid}) is not among the host's processes")

    # --- state for the stories ------------------------------------------------------------------

    def active(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.state != "Terminated"]

    def wait_instances(self, n_active: int, timeout: float) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if len(self.active()) == n_active:
                return
            time.sleep(0.2)
        raise AssertionError(f"{len(self.active())} active instances after {timeout}s, expected {n_active}: "
                             + ", ".join(f"{i.iid}={i.state}" for i in self.instances.values()))

    def sleep_now(self, timeout: float = 150) -> dict:
        """The operator's path to sleep: `aws autoscaling set-desired-capacity 0` on the group,
        the call the agent itself makes on idle. The group terminates the instance through the
        same lifecycle hook, so the agent runs the same save path (DNS back, the game stopped
        gracefully, the hook completed), without waiting out IdleMinutes. For the stories that
        only need the server asleep again; the stories about idle wait for it.
        Returns the agent's `graceful_stop_done` event."""
        (inst,) = [i for i in self.active() if not i.state.startswith("Warmed:")]
        asked = time.time()
        self.client("autoscaling").set_desired_capacity(
            AutoScalingGroupName=self.deployed.group, DesiredCapacity=0, HonorCooldown=False)
        self.wait_for("instance_terminated", timeout, source="asg", after=asked,
                      pred=lambda e: e["instance"] == inst.iid)
        assert inst.hook_result == "CONTINUE", f"the agent did not complete the hook ({inst.hook_result})"
        assert self.record_values() == ["0.0.0.0"], "DNS back at the placeholder"
        stop = self.wait_for("graceful_stop_done", 5, source="agent", after=asked,
                             pred=lambda e: e.get("instance") == inst.iid)
        assert stop["exit_code"] in ("0", 0), f"the game did not stop cleanly: {stop}"
        return stop

    def wait_pool_ready(self, timeout: float) -> "Instance":
        """Waits until the warm pool holds a prepared, stopped instance, and returns it."""
        end = time.time() + timeout
        while time.time() < end:
            ready = [i for i in self.instances.values() if i.state == "Warmed:Stopped"]
            if ready:
                return ready[0]
            time.sleep(0.2)
        raise AssertionError(f"no prepared instance in the warm pool within {timeout}s: "
                             + ", ".join(f"{i.iid}={i.state}" for i in self.instances.values()))

    def game_log(self, inst: Instance) -> str:
        """What every game container the instance ran printed, in order (from its own daemon, or
        as kept when the instance stopped)."""
        self._keep_game_logs(inst)
        return "\n".join(inst.game_logs[k] for k in sorted(inst.game_logs, key=lambda k: int(k.rsplit("-", 1)[1])))

    def efs_folder(self, efs: dict) -> Path:
        """A task volume's folder in the twin's EFS: its access point's root directory, made
        with the access point's CreationInfo when missing, as EFS does."""
        folder = self.efs / efs["FilesystemId"]
        ap = self.deployed.access_points.get((efs.get("AuthorizationConfig") or {}).get("AccessPointId", ""))
        if ap is not None:
            folder = folder / ap["path"].lstrip("/")
            if not folder.is_dir():
                folder.mkdir(parents=True)
                os.chown(folder, int(ap["creation"]["uid"]), int(ap["creation"]["gid"]))
                os.chmod(folder, int(ap["creation"]["perm"], 8))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def world_fs(self) -> str:
        """The world's file system: the stack's own, or the one it adopted (ExistingFileSystemId)."""
        return self.deployed.outputs.get("DataFileSystemId") or self.deployed.physical["DataFileSystem"]

    def data_dir(self) -> Path:
        """The world's folder: the data file system's /data, where DataAccessPoint roots the
        game's mount (and HostAccessPoint the operator's /mnt/world)."""
        return self.efs / self.world_fs() / "data"

    def save_file(self) -> Path:
        """The game's save in the data "EFS" (DataPath in the task's first mount)."""
        world = self.params.get("Env2", "WORLD_NAME=world").split("=", 1)[1]
        return self.data_dir() / "worlds" / f"{world}.json"

    def wait_game_up(self, timeout: float, after: float = 0.0) -> dict:
        """The agent's first sample with the probe's player count: from then on the agent knows
        the game is up, so an exit is a crash (before it, an exit is a game that never started:
        the core's rule 11)."""
        return self.wait_for("sample", timeout, source="agent", after=after,
                             pred=lambda e: e.get("players") not in (None, ""))

    def plant_crash(self) -> None:
        folder = self.data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "crash-now").write_text("a bug\n")

    def backup_now(self, created: dt.datetime) -> str:
        """AWS Backup's daily job on the data file system: a copy of the whole file system as
        it is now, a recovery point made at `created` in the stack's vault (tests/shim/backup.py).
        Returns its ARN."""
        fs = self.world_fs()
        snapshot = self.dir / "backups" / f"{fs}-{created:%Y%m%dT%H%M%S}"
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        sh("cp", "-a", str(self.efs / fs), str(snapshot))
        return self.shim.post("/_shim/backup", {
            # moto's CloudFormation makes no vault; the name is only a label in the emulator.
            "vault": self.deployed.physical.get("BackupVault", f"container-manager-{self.params['ServerName']}"),
            "resource_arn": f"arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/{fs}",
            "created": created.isoformat(), "snapshot": str(snapshot), "efs_root": str(self.efs)})["RecoveryPointArn"]

    # --- teardown -------------------------------------------------------------------------------

    def _cleanup_containers(self) -> None:
        """This twin's containers on the host's dockerd (instances, builds), and its instances'
        own daemons; another slot's are not touched."""
        names = sh("docker", "ps", "-aq", "--filter", f"label={self.names.label}", check=False).stdout.split()
        if names:
            sh("docker", "rm", "-f", *names, check=False)

    def close(self) -> None:
        self.stop.set()
        for p in self.players:
            if p.poll() is None:
                p.kill()
        for t in self.threads:
            t.join(5)
        for inst in self.instances.values():
            if inst.docker is not None:
                try:
                    inst.docker.remove()
                except Exception:  # noqa: BLE001 - cleanup goes on
                    pass
        for u in getattr(self, "urls", {}).values():
            u.close()
        if getattr(self, "site", None) is not None:
            # Another game of a site: its own instances only; the site closes what they share.
            own = [self.names.instance_container(iid) for iid in self.instances]
            if own:
                sh("docker", "rm", "-f", *own, check=False)
            for inst in self.instances.values():
                self._drop_clock(inst)
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        self._cleanup_containers()
        kill_leftover_daemons(self.names)
        for part in ("dns", "delivery", "package", "shim", "net"):
            obj = getattr(self, part, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - cleanup goes on
                    pass
        for inst in self.instances.values():
            self._drop_clock(inst)
        shutil.rmtree(self.dir, ignore_errors=True)
        slot = getattr(self, "slot", None)
        if slot is not None:
            slot.close()

    def __enter__(self) -> "Twin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
