"""cloud/discord_verify.py, the Ed25519 check of Discord's interactions (issue 37, its first part):
RFC 8032's test vectors, random keys and messages against `cryptography`, and the requests it
must refuse (tampered body, wrong key, stale or replayed timestamp, garbage headers)."""

import importlib.util
import os
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import ROOT

spec = importlib.util.spec_from_file_location("discord_verify", ROOT / "cloud" / "discord_verify.py")
dv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dv)

# RFC 8032 §7.1, TEST 1, 2 and 3: (public key, message, signature).
RFC_8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("key,msg,sig", RFC_8032, ids=["test1", "test2", "test3"])
def test_rfc_8032_vectors_verify_and_any_changed_bit_fails(key, msg, sig):
    key, msg, sig = bytes.fromhex(key), bytes.fromhex(msg), bytes.fromhex(sig)
    assert dv.verify(key, msg, sig)
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 1
        assert not dv.verify(key, msg, bytes(bad)), f"signature byte {i} changed"
    assert not dv.verify(key, msg + b"x", sig)
    (other,) = [bytes.fromhex(v[0]) for v in RFC_8032 if v[0] != key.hex()][:1]
    assert not dv.verify(other, msg, sig), "another key"


def test_random_keys_and_messages_agree_with_cryptography():
    rng = random.Random(8032)
    for n in range(25):
        private = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        msg = rng.randbytes(rng.randrange(0, 300))
        sig = private.sign(msg)
        assert dv.verify(public, msg, sig), n
        assert not dv.verify(public, msg[:-1] + b"!" if msg else b"!", sig), n


def test_non_canonical_and_malformed_input_is_refused():
    key, _, sig = (bytes.fromhex(x) for x in RFC_8032[0])
    s = int.from_bytes(sig[32:], "little")
    assert not dv.verify(key, b"", sig[:32] + (s + dv.L).to_bytes(32, "little")), "S >= L (malleability)"
    assert not dv.verify(key[:31], b"", sig) and not dv.verify(key, b"", sig[:63])
    assert not dv.verify(b"\xff" * 32, b"", sig), "a public key that is no point"


def signed(private, body, when):
    return {"X-Signature-Ed25519": private.sign(str(when).encode() + body).hex(), "X-Signature-Timestamp": str(when)}


def test_discord_requests_are_checked_for_signature_key_age_and_headers():
    private = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
    key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    body, now = b'{"type":1}', 1_800_000_000
    assert dv.check(signed(private, body, now), body, key, now=now) is None
    assert dv.check(signed(private, body, now), b'{"type":2}', key, now=now) == "bad signature", "tampered body"
    wrong = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
    assert dv.check(signed(wrong, body, now), body, key, now=now) == "bad signature", "wrong key"
    assert dv.check(signed(private, body, now - 301), body, key, now=now) == "stale timestamp", "a replay"
    for headers in ({}, {"X-Signature-Ed25519": "zz", "X-Signature-Timestamp": str(now)},
                    {"X-Signature-Ed25519": "00" * 64, "X-Signature-Timestamp": "soon"}, None):
        assert dv.check(headers, body, key, now=now) == "missing or malformed signature headers", headers
    # Header names are case-insensitive, as HTTP's are (API Gateway and function URLs lower-case them).
    lower = {k.lower(): v for k, v in signed(private, body, now).items()}
    assert dv.check(lower, body, key, now=now) is None

