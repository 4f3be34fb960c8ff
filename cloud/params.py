"""The user's parameter file, checked before any AWS call (cloud/deploy.sh and cloud/world.sh).

    python3 cloud/params.py PARAMS.json

The file is in the create-stack format the examples use: a list of {"ParameterKey", "ParameterValue"}.
Prints shell assignments (p_<Key>=... for the few values the scripts need, and an `overrides`
array of Key=Value for `aws cloudformation deploy`), or exits 2 with an error that names the file
and the key. Standard library only: the scripts run where the AWS CLI runs, macOS included.
"""
import json, os, re, sys

# Parameters that older versions of the template had, and why they went.
REMOVED = {
    "SshCidr": "the instance has no SSH key and no open port 22; Session Manager is the one way in (cloud/world.sh shell, docs/cloud.md)",
}
path = sys.argv[1]
def bad(msg):
    print(f"{path}: {msg}", file=sys.stderr)
    sys.exit(2)
try:
    items = json.load(open(path))
except (OSError, ValueError) as e:
    bad(f"not valid JSON ({e}); expected a list of {{\"ParameterKey\": ..., \"ParameterValue\": ...}}")
if not isinstance(items, list):
    bad("expected a JSON list of {\"ParameterKey\": ..., \"ParameterValue\": ...}")
seen = {}
for i, item in enumerate(items):
    if not isinstance(item, dict) or not isinstance(item.get("ParameterKey"), str) \
            or not isinstance(item.get("ParameterValue"), str):
        bad(f"[{i}]: expected {{\"ParameterKey\": \"Name\", \"ParameterValue\": \"text\"}}")
    key, value = item["ParameterKey"], item["ParameterValue"]
    if key in seen:
        bad(f"{key}: given twice")
    if "\n" in value:
        bad(f"{key}: a value must be one line")
    seen[key] = value
for key, why in REMOVED.items():
    if key in seen:
        bad(f"{key}: this parameter was removed: {why}; delete it from the file")
import shlex
# A base's file (docs/many-servers.md): BaseName and HostedZoneId, IPv6 optionally, nothing else.
BASE_KEYS = {"BaseName", "HostedZoneId", "IPv6"}
def short_name(key):
    """ServerName and BaseName: they name resources and SSM paths."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", seen[key]):
        bad(f"{key}: {seen[key]!r} is not 1 to 24 lower-case letters, digits or hyphens starting with a letter")
if "BaseName" in seen and "ServerName" not in seen:
    short_name("BaseName")
    if not seen.get("HostedZoneId"):
        bad("HostedZoneId: missing (expected the id of the hosted zone every game of this base is named in, Z...)")
    if seen.get("IPv6", "false") not in ("true", "false"):
        bad(f"IPv6: {seen['IPv6']!r}; expected true or false")
    for key in seen:
        if key not in BASE_KEYS:
            bad(f"{key}: not a base's parameter (a base takes {', '.join(sorted(BASE_KEYS))}); a game's settings go "
                "in the game's own file, with BaseName, and ServerName for the game")
    print("p_layout=base")
    for key in sorted(BASE_KEYS):
        print(f"p_{key}={shlex.quote(seen.get(key, ''))}")
    sys.exit(0)
# A game in a base: the deploy command fills in the base's network from the base's outputs.
for key in ("BaseVpcId", "BaseSubnetA", "BaseSubnetB", "BaseS3EndpointId"):
    if key in seen:
        bad(f"{key}: the deploy command sets it from the base's outputs; delete it from the file and keep BaseName")
if seen.get("BaseName"):
    short_name("BaseName")
    hook = seen.get("WebhookUrlParameter", "")
    if seen.get("WebhookKind", "none") != "none" and not hook.startswith("/container-manager/"):
        bad(f"WebhookUrlParameter: {hook!r}; a game in a base keeps its webhook's URL under /container-manager/ "
            "(the base's wake function may read only there), for example /container-manager/<ServerName>/discord")
for key in ("ServerName", "HostedZoneId", "RecordName"):
    if not seen.get(key):
        bad(f"{key}: missing (expected, for example, "
            + {"ServerName": "valheim", "HostedZoneId": "the id of your hosted zone, Z...",
               "RecordName": "valheim.example.com"}[key] + ")")
short_name("ServerName")
if seen.get("AgentPackageUrl") and not re.fullmatch(r"[0-9a-f]{64}", seen.get("AgentPackageSha256", "")):
    bad("AgentPackageSha256: expected the 64 hex digits of the file at AgentPackageUrl")
if bool(seen.get("DiscordApplicationId")) != bool(seen.get("DiscordPublicKey")):
    missing = "DiscordPublicKey" if seen.get("DiscordApplicationId") else "DiscordApplicationId"
    bad(f"{missing}: missing; the Discord /wake endpoint needs both DiscordApplicationId and DiscordPublicKey "
        "(your application's General Information page, docs/discord.md), or neither")
if seen.get("DiscordPublicKey") and not re.fullmatch(r"[0-9a-f]{64}", seen["DiscordPublicKey"]):
    bad("DiscordPublicKey: expected the 64 hex digits of your Discord application's Public Key")
def number(key, default):
    try:
        return int(seen.get(key, default))
    except ValueError:
        bad(f"{key}: {seen[key]!r} is not a whole number")
limit, reserved = number("ContainerMemoryLimitMiB", 0), number("ContainerMemoryMiB", 1024)
if limit and limit <= reserved:
    # ECS refuses it only when the task definition is registered, halfway through the deploy.
    bad(f"ContainerMemoryLimitMiB: {limit} must be more than ContainerMemoryMiB ({reserved}), the memory the "
        "container reserves; or 0 for no hard limit")

# The game's environment file (EnvironmentFile, a path beside the parameter file): checked line by
# line against how the ECS agent reads it (docs/aws-sources.md §17). The agent splits each line at
# its first "=" and keeps the value as it is; it skips, without a word, a line starting with "#",
# a line with no "=", and one with an empty name or value. Every line it would skip or misread,
# other than comments and blank lines, is refused here with its number.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_LINE = 64 * 1024  # the agent's line reader (Go's bufio.Scanner) stops at a longer line


def env_file_problems(env_path, slots, notes=None):
    """Each problem of the environment file at env_path as "line N: ...", or the file's own; into
    `notes`, the lines that are valid but likely not meant (quotes or a comment kept in a value)."""
    notes = [] if notes is None else notes
    try:
        raw = open(env_path, "rb").read()
    except OSError as e:
        return [f"cannot read it ({e.strerror})"]
    problems, seen_at = [], {}
    for n, line in enumerate(raw.split(b"\n"), 1):
        if line.endswith(b"\r"):
            line = line[:-1]  # the agent's reader drops a CR before the newline
        if len(line) >= MAX_LINE:
            problems.append(f"line {n}: {len(line)} bytes long; ECS's agent reads lines up to {MAX_LINE - 1} bytes")
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"line {n}: not UTF-8 text (ECS expects the file in UTF-8)")
            continue
        if text.startswith("#") or not text.strip():
            continue
        if "\0" in text:
            problems.append(f"line {n}: holds a NUL character, which no environment variable can")
            continue
        if "=" not in text:
            problems.append(f"line {n}: expected NAME=value; ECS would skip this line")
            continue
        name, value = text.split("=", 1)
        if not NAME.fullmatch(name):
            problems.append(f"line {n}: {name!r} is not a variable name (letters, digits and _, not starting "
                            "with a digit; ECS takes spaces as part of the name)")
        elif value == "":
            problems.append(f"line {n}: {name} has an empty value; ECS skips such a line, so {name} would not "
                            "be set (give it a value, or delete the line)")
        elif name in seen_at:
            problems.append(f"line {n}: {name} is already set on line {seen_at[name]}")
        elif name in slots:
            problems.append(f"line {n}: {name} is also set by {slots[name]}, which ECS gives precedence; "
                            "set it in one place")
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            notes.append(f"line {n}: {name}'s value keeps its quotes ({value[0]}...{value[0]}): ECS removes none")
        elif " #" in value:
            notes.append(f"line {n}: {name}'s value includes {value[value.index(' #'):]!r}: ECS has no comment "
                         "after a value, so that is part of it")
        seen_at.setdefault(name, n)
    if not seen_at and not problems:
        problems.append("sets no variable; expected NAME=value lines")
    return problems


if "EnvironmentFile" in seen:
    if seen.get("EnvironmentFileKey"):
        bad("EnvironmentFileKey: set by the deploy command from EnvironmentFile; give one of the two, not both")
    env_file = seen["EnvironmentFile"]
    if not env_file:
        bad("EnvironmentFile: empty; expected the path of the game's environment file (NAME=value lines), "
            "relative to this parameter file, or delete the key")
    env_file = os.path.join(os.path.dirname(os.path.abspath(path)), env_file)
    slots = {seen[k].split("=", 1)[0]: k for k in (f"Env{i}" for i in range(1, 11)) if seen.get(k)}
    notes = []
    problems = env_file_problems(env_file, slots, notes)
    for note in notes:
        print(f"{path}: EnvironmentFile: {env_file}, {note}", file=sys.stderr)
    if problems:
        for problem in problems[:20]:
            print(f"{path}: EnvironmentFile: {env_file}, {problem}", file=sys.stderr)
        if len(problems) > 20:
            print(f"{path}: EnvironmentFile: {env_file}: {len(problems) - 20} more", file=sys.stderr)
        sys.exit(2)
    seen["EnvironmentFile"] = env_file

# The game's ports: each entry proto:port or proto:from-to, at most as many as the stack has
# ingress rules for (GamePortNIngress); more would be watched by the agent and closed to players.
MAX_PORTS = 8
ports = [p.strip() for p in seen.get("GamePorts", "").split(",") if p.strip()]
if "GamePorts" in seen and not ports:
    bad("GamePorts: empty; expected one to eight entries such as udp:2456-2458,tcp:25565")
if len(ports) > MAX_PORTS:
    bad(f"GamePorts: {len(ports)} entries; the stack opens at most {MAX_PORTS} (a range such as udp:27015-27020 "
        "is one entry)")
for entry in ports:
    m = re.fullmatch(r"(udp|tcp):([0-9]{1,5})(?:-([0-9]{1,5}))?", entry)
    if not m:
        bad(f"GamePorts: {entry!r} is not udp:N, tcp:N, udp:N-M or tcp:N-M")
    low, high = int(m.group(2)), int(m.group(3) or m.group(2))
    if not 1 <= low <= high <= 65535:
        bad(f"GamePorts: {entry!r}: ports are 1 to 65535, the first of a range no higher than the last")

# The container's resource limits: name=soft:hard, at most three (the template's slots).
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")
MAX_ULIMITS = 3
limits = [u.strip() for u in seen.get("ContainerUlimits", "").split(",") if u.strip()]
if len(limits) > MAX_ULIMITS:
    bad(f"ContainerUlimits: {len(limits)} entries; the stack takes at most {MAX_ULIMITS}")
named = set()
for entry in limits:
    m = re.fullmatch(r"([a-z]+)=([0-9]+):([0-9]+)", entry)
    if not m or m.group(1) not in ULIMITS:
        bad(f"ContainerUlimits: {entry!r} is not name=soft:hard with a name among {', '.join(ULIMITS)}")
    if int(m.group(2)) > int(m.group(3)):
        bad(f"ContainerUlimits: {entry!r}: the soft limit is above the hard one")
    if m.group(1) in named:
        bad(f"ContainerUlimits: {m.group(1)} is given twice")
    named.add(m.group(1))

# The pre-stop command: a JSON list of its arguments, written into the agent's TOML file as it is,
# or the older comma-separated form.
pre_stop = seen.get("PreStopCommand", "")
if pre_stop.startswith("["):
    try:
        args = json.loads(pre_stop)
    except ValueError as e:
        bad(f"PreStopCommand: not a JSON list ({e}); expected, for example, [\"rcon-cli\", \"save-all\"]")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args) or not args[0]:
        bad("PreStopCommand: expected a list of strings with the program first, e.g. [\"rcon-cli\", \"save-all\"]")
    # JSON's escapes that TOML lacks: "\/" and a UTF-16 surrogate pair.
    if re.search(r"\\/|\\u[dD][89abAB]", pre_stop):
        bad("PreStopCommand: write \"/\" and characters outside the Basic Multilingual Plane as they are, "
            "not as \\/ or \\uD8xx escapes (the agent's TOML file takes no such escape)")
elif pre_stop:
    if any(c in pre_stop for c in "\"\\"):
        bad("PreStopCommand: the comma-separated form takes no quote or backslash; write it as a JSON list, "
            "e.g. [\"sh\", \"-c\", \"echo \\\"save\\\" > /tmp/console\"]")
    if re.search(r"\s,|,\s", pre_stop):
        bad(f"PreStopCommand: {pre_stop!r} has a space next to a comma, which would become part of an "
            "argument; write it as a JSON list, e.g. [\"rcon-cli\", \"save-all\"]")
print("p_layout=game")
for key in ("ServerName", "BaseName", "HostedZoneId", "RecordName", "IPv6", "AgentPackageUrl", "AgentPackageSha256",
            "MetricsNamespace", "IdleMinutes", "UnusedWakesPerDay", "DiscordPublicKey", "WebhookKind",
            "WebhookUrlParameter", "WebhookEvents", "WarmPool", "EnvironmentFile", "EnvironmentFileKey",
            "RegistryCredentialsSecretArn",
            *(f"Secret{i}" for i in range(1, 11))):
    print(f"p_{key}={shlex.quote(seen.get(key, ''))}")
print("overrides=(" + " ".join(shlex.quote(f"{k}={v}") for k, v in seen.items()
                               if k not in ("AgentPackageKey", "AgentPackageUrl", "AgentPackageSha256", "DiscordCodeSha256",
                                             "EnvironmentFile", "EnvironmentFileKey")) + ")")
