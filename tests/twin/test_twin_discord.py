"""Players wake the server from Discord (issue 37). Discord POSTs each /wake or /status
interaction to the stack's function URL, signed with the application's Ed25519 key; the stack is
deployed with DiscordApplicationId and DiscordPublicKey, so the deploy command uploads the
endpoint's code to the artifact bucket. Here the test plays Discord: it signs with the private
half of the stack's DiscordPublicKey and sends real HTTP requests to the twin's function URL,
which runs the function's code from the bucket (functionurl.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, RECORD, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180  # seconds a wake may take, request to playable, on a loaded 2-core machine
DEADLINE = 3.0  # Discord waits this long for the endpoint's answer
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"the twin's Discord application").digest())
APPLICATION = "1234567890123456789"
DISCORD = {"DiscordApplicationId": APPLICATION,
           "DiscordPublicKey": KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()}


def interaction(name: str | None, member: str = "4242") -> str:
    if name is None:
        return json.dumps({"type": 1, "application_id": APPLICATION})  # Discord's PING
    return json.dumps({"type": 2, "application_id": APPLICATION, "data": {"name": name, "type": 1},
                       "member": {"user": {"id": member, "username": "viking"}}})


def signed(body: str, when: float | None = None, key: Ed25519PrivateKey = KEY) -> dict[str, str]:
    stamp = str(int(time.time() if when is None else when))
    return {"X-Signature-Ed25519": key.sign(stamp.encode() + body.encode()).hex(), "X-Signature-Timestamp": stamp}


def post(url: str, body: str, headers: dict[str, str]) -> tuple[int, dict, float]:
    """One request as Discord sends it; the status, the JSON answer and the round trip."""
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)", **headers})
    start = time.time()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), time.time() - start
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), time.time() - start


def content(answer: dict) -> str:
    assert answer.get("type") == 4, f"expected a channel message (type 4), got {answer}"
    return answer["data"]["content"]


def test_signed_discord_wake_brings_the_server_up():
    with Twin(overrides=DISCORD) as tw:
        url = tw.function_urls["DiscordUrl"]
        # Discord checks the endpoint with a PING when the URL is saved in the Developer Portal.
        status, answer, _ = post(url, interaction(None), signed(interaction(None)))
        assert (status, answer) == (200, {"type": 1}), answer

        body = interaction("wake")
        status, answer, took = post(url, body, signed(body))
        print(f"/wake answered in {took * 1000:.0f} ms")
        assert status == 200 and took < DEADLINE, (status, took)
        assert content(answer) == f"Waking {RECORD}: usually ready in about 4 minutes.", answer
        assert tw.desired() == 1
        woke = f"Woke {tw.deployed.group}: /wake by member 4242."
        assert woke in tw.function_log("DiscordFunction"), tw.function_log("DiscordFunction")

        launched = tw.wait_for("instance_launching", 60)
        tw.wait_game_up(BOOT)
        print(f"/wake to the game's first answer: {time.time() - launched['t']:.0f} s after the launch")
        assert not [e for e in tw.named("wake_invoked") if e["result"] == "woken"], "no DNS lookup woke it"
        # Players who ask now hear that it is up (once the agent has recorded it online).
        end, said = time.time() + 60, ""
        while time.time() < end and said != f"{RECORD} is up.":
            body = interaction("status", member="7")
            status, answer, took = post(url, body, signed(body))
            assert status == 200 and took < DEADLINE, (status, took)
            said = content(answer)
            time.sleep(1)
        assert said == f"{RECORD} is up.", said
        body = interaction("wake", member="8")
        assert content(post(url, body, signed(body))[1]) == f"{RECORD} is up already."
        assert tw.desired() == 1 and len(tw.active()) == 1


def test_unsigned_tampered_or_replayed_discord_requests_get_401_and_wake_nothing():
    with Twin(overrides=DISCORD) as tw:
        url = tw.function_urls["DiscordUrl"]
        wake, status_body = interaction("wake"), interaction("status")
        asked_status = signed(status_body)
        captured = time.time() - 600  # a real /wake that someone recorded ten minutes ago
        cases = {
            "unsigned": (wake, {}),
            "signed by another key": (wake, signed(wake, key=Ed25519PrivateKey.generate())),
            # A signed /status with its body swapped for a /wake.
            "tampered": (wake, asked_status),
            "replayed": (wake, signed(wake, when=captured)),
            "garbage headers": (wake, {"X-Signature-Ed25519": "zz", "X-Signature-Timestamp": "soon"}),
        }
        for name, (body, headers) in cases.items():
            status, answer, took = post(url, body, headers)
            assert (status, answer) == (401, {"error": "invalid request signature"}), (name, status, answer)
            assert took < DEADLINE, (name, took)
        time.sleep(2)  # the twin's launcher reads the group five times a second
        assert [e["value"] for e in tw.named("desired_capacity", "asg")] == [0]
        assert tw.desired() == 0 and not tw.active() and not tw.named("instance_launching")
        refused = [line for line in tw.function_log("DiscordFunction") if line.startswith("Refused an interaction")]
        assert len(refused) == len(cases), refused
        assert not [line for line in tw.function_log("DiscordFunction") if line.startswith("Woke")]


def test_discord_status_answers_while_asleep_without_waking():
    with Twin(overrides=DISCORD) as tw:
        url = tw.function_urls["DiscordUrl"]
        for member in ("1", "2", "3"):
            body = interaction("status", member=member)
            status, answer, took = post(url, body, signed(body))
            assert status == 200 and took < DEADLINE, (status, took)
            assert content(answer) == f"{RECORD} is asleep.", answer
        time.sleep(2)  # the twin's launcher reads the group five times a second
        assert [e["value"] for e in tw.named("desired_capacity", "asg")] == [0]
        assert tw.desired() == 0 and not tw.active() and not tw.named("instance_launching")
        assert tw.record_values() == ["0.0.0.0"]
