"""The user's parameter file, checked before any AWS call (cloud/deploy.sh and cloud/world.sh).

    python3 cloud/params.py PARAMS.json

The file is in the create-stack format the examples use: a list of {"ParameterKey", "ParameterValue"}.
Prints shell assignments (p_<Key>=... for the few values the scripts need, and an `overrides`
array of Key=Value for `aws cloudformation deploy`), or exits 2 with an error that names the file
and the key. Standard library only: the scripts run where the AWS CLI runs, macOS included.
"""
import json, re, sys

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
for key in ("ServerName", "HostedZoneId", "RecordName"):
    if not seen.get(key):
        bad(f"{key}: missing (expected, for example, "
            + {"ServerName": "valheim", "HostedZoneId": "the id of your hosted zone, Z...",
               "RecordName": "valheim.example.com"}[key] + ")")
if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", seen["ServerName"]):
    bad(f"ServerName: {seen['ServerName']!r} is not 1 to 24 lower-case letters, digits or hyphens starting with a letter")
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
import shlex
for key in ("ServerName", "HostedZoneId", "RecordName", "IPv6", "AgentPackageUrl", "AgentPackageSha256",
            "MetricsNamespace", "IdleMinutes", "UnusedWakesPerDay", "DiscordPublicKey", "Secret1", "Secret2",
            "Secret3", "Secret4", "Secret5", "WebhookKind", "WebhookUrlParameter", "WebhookEvents", "WarmPool"):
    print(f"p_{key}={shlex.quote(seen.get(key, ''))}")
print("overrides=(" + " ".join(shlex.quote(f"{k}={v}") for k, v in seen.items()
                               if k not in ("AgentPackageKey", "AgentPackageUrl", "AgentPackageSha256", "DiscordCodeSha256")) + ")")
