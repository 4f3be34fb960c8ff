# Discord's request signature for an interactions endpoint (issue 37): Ed25519 (RFC 8032) over
# X-Signature-Timestamp + body, with the application's public key. Pure Python, for a function
# whose runtime has no Ed25519 (Lambda's Python has hashlib, not `cryptography`); small enough
# to go inline with the handler, with no layer to build or pin. Verification only: no secret, so
# timing side channels do not apply. Checked against RFC 8032's test vectors and `cryptography`
# (tests/cloud/test_discord_verify.py).
import hashlib
import time

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
I = pow(2, (P - 1) // 4, P)  # a square root of -1


def _add(a, b):  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z
    e = (a[1] - a[0]) * (b[1] - b[0]) % P
    f = (a[1] + a[0]) * (b[1] + b[0]) % P
    g = 2 * a[3] * b[3] * D % P
    h = 2 * a[2] * b[2] % P
    e, f, g, h = f - e, h - g, h + g, f + e
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, a):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, a)
        a = _add(a, a)
        s >>= 1
    return q


def _point(b):  # decodes 32 bytes to a point, or None (RFC 8032 5.1.3)
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * v**3 * pow(u * v**7, (P - 5) // 8, P) % P
    if (v * x * x - u) % P:
        x = x * I % P
        if (v * x * x - u) % P:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _same(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


_BY = 4 * pow(5, P - 2, P) % P
B = _point(_BY.to_bytes(32, "little"))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 5.1.7: [S]B = R + [k]A, with S < L and canonical encodings."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _point(public_key), _point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    return _same(_mul(s, B), _add(r, _mul(k, a)))


MAX_AGE = 300  # seconds a signed request stays acceptable (a replay after it is refused)


def check(headers: dict, body: bytes, public_key_hex: str, now: float | None = None) -> str | None:
    """None when Discord signed this request recently; otherwise why it is refused (-> 401)."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    sig, stamp = h.get("x-signature-ed25519", ""), h.get("x-signature-timestamp", "")
    try:
        key, signature, when = bytes.fromhex(public_key_hex), bytes.fromhex(sig), int(stamp)
    except ValueError:
        return "missing or malformed signature headers"
    if abs((time.time() if now is None else now) - when) > MAX_AGE:
        return "stale timestamp"
    if not verify(key, stamp.encode() + body, signature):
        return "bad signature"
    return None
