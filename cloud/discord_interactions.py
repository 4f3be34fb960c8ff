# Discord's interactions endpoint for the game server (issue 37): players run /wake and /status in
# the community's Discord. A Lambda function URL calls `handler`; every request is checked against
# the application's public key first (discord_verify.check), and anything unsigned, tampered with
# or stale gets 401 with nothing done. It answers Discord's PING, and replies at once (Discord
# waits 3 s): one DescribeAutoScalingGroups, and for /wake one SetDesiredCapacity to 1, nothing
# else. It respects the wake budget as a DNS lookup does (cloud/container-manager.yaml's
# WakeFunction): after WAKE_BUDGET wakes in a day that nobody joined, /wake says so and leaves the
# server asleep; the operator's `cloud/cm wake` still wakes it. Environment: PUBLIC_KEY (hex),
# APPLICATION_ID, AUTO_SCALING_GROUP, SERVER_REGION, SERVER_NAME, READY_IN (the usual wake time,
# for the reply), WAKE_COOLDOWN (seconds between two wakes by one member), WAKE_BUDGET (0: none).
import base64
import json
import os
import time

import boto3

from discord_verify import check

GROUP = os.environ["AUTO_SCALING_GROUP"]
NAME = os.environ.get("SERVER_NAME", GROUP)
READY_IN = os.environ.get("READY_IN", "a few minutes")
COOLDOWN = int(os.environ.get("WAKE_COOLDOWN", "60"))
BUDGET = int(os.environ.get("WAKE_BUDGET", "0"))
APPLICATION = os.environ.get("APPLICATION_ID", "")
autoscaling = boto3.client("autoscaling", region_name=os.environ["SERVER_REGION"])
last_wake: dict[str, float] = {}  # member id -> when they last woke it (per warm function instance)

PING, COMMAND = 1, 2
PONG, MESSAGE = 1, 4


def reply(status, payload):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload)}


def say(text):
    return reply(200, {"type": MESSAGE, "data": {"content": text, "allowed_mentions": {"parse": []}}})


def tag(group, key):
    return next((t["Value"] for t in group.get("Tags", []) if t["Key"] == key), "")


def unused_wakes(group, now):
    # The agent's ledger on the group: the end times of the last day's wakes nobody joined.
    ends = [int(t) for t in tag(group, "container-manager:unused-wakes").split() if t.isdigit()]
    return sorted(t for t in ends if 0 <= now - t < 86400)


def state(group):
    instances = group.get("Instances", [])
    if any(i["LifecycleState"].startswith("Terminating") for i in instances):
        return "going to sleep (saving the world)"
    if group["DesiredCapacity"] == 0:
        return "asleep"
    online = tag(group, "container-manager:online")
    stop = tag(group, "container-manager:last-stop").split(" ")[0]
    up = online.isdigit() and (not stop.isdigit() or int(online) > int(stop))
    return "up" if up and instances else "waking up"


def handler(event, context):
    body = event.get("body") or ""
    body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    refused = check(event.get("headers") or {}, body, os.environ["PUBLIC_KEY"])
    if refused:
        print(f"Refused an interaction: {refused}")
        return reply(401, {"error": "invalid request signature"})
    interaction = json.loads(body)
    if APPLICATION and interaction.get("application_id") != APPLICATION:
        print(f"Refused an interaction for application {interaction.get('application_id')}")
        return reply(401, {"error": "not this application's interaction"})
    if interaction.get("type") == PING:
        return reply(200, {"type": PONG})
    if interaction.get("type") != COMMAND:
        return reply(400, {"error": "unsupported interaction type"})
    command = (interaction.get("data") or {}).get("name")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    now_state = state(group)
    if command == "status":
        return say(f"{NAME} is {now_state}.")
    if command != "wake":
        return say(f"Unknown command: {command}. Try /wake or /status.")
    if now_state != "asleep":
        return say(f"{NAME} is {now_state} already.")
    member = ((interaction.get("member") or {}).get("user") or interaction.get("user") or {}).get("id", "?")
    if time.time() - last_wake.get(member, 0) < COOLDOWN:
        return say(f"You woke {NAME} less than {COOLDOWN} s ago; give it a moment.")
    unused = unused_wakes(group, time.time())
    if BUDGET and len(unused) >= BUDGET:
        again = time.strftime("%H:%M UTC", time.gmtime(unused[0] + 86400))
        print(f"Not waking {GROUP}: /wake by member {member}, but the wake budget ({BUDGET}) is spent.")
        return say(f"{NAME} was woken {len(unused)} times in the last day with nobody joining, so it stays "
                   f"asleep until {again}. The operator can still wake it.")
    last_wake[member] = time.time()
    autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1, HonorCooldown=False)
    print(f"Woke {GROUP}: /wake by member {member}.")
    return say(f"Waking {NAME}: usually ready in about {READY_IN}.")
