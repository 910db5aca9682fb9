"""Visitor context for rule conditions: country, language, cookies and JWT roles.

The matchers take *effective* values; this module derives them from what an edge sees
(spec R2.13 and R2.14): explicit arguments first, then the ``nf_country`` / ``nf_lang``
cookies, then ``Accept-Language``; roles come from an ``nf_jwt`` cookie verified as
HS256 with the site's secret, with ``exp`` checked against the caller's ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

DEFAULT_ROLE_CLAIM = "app_metadata.authorization.roles"

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]


class Visitor(tuple[bytes, bytes, frozenset[bytes], frozenset[bytes]]):
    """Effective (country, language, cookie names with values, roles) as bytes."""

    __slots__ = ()

    def __new__(
        cls, country: bytes, language: bytes, cookies: frozenset[bytes], roles: frozenset[bytes]
    ) -> Visitor:
        return tuple.__new__(cls, (country, language, cookies, roles))

    @property
    def country(self) -> bytes:
        return self[0]

    @property
    def language(self) -> bytes:
        return self[1]

    @property
    def cookies(self) -> frozenset[bytes]:
        return self[2]

    @property
    def roles(self) -> frozenset[bytes]:
        return self[3]


def header(headers: HeadersLike | None, name: str) -> str | None:
    """Case-insensitive lookup of the first header ``name``."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    lname = name.lower()
    for k, v in items:
        if k.lower() == lname:
            return v
    return None


def parse_cookie_header(value: str) -> dict[str, str]:
    """Parse a ``Cookie`` header leniently (first occurrence of a name wins)."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, val = part.strip().partition("=")
        if sep and name and name not in out:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            out[name] = val
    return out


def first_language(accept_language: str | None) -> str:
    """The first Accept-Language entry without parameters (R2.13)."""
    if not accept_language:
        return ""
    return accept_language.split(",", 1)[0].split(";", 1)[0].strip()


def derive(
    *,
    country: str | None,
    language: str | None,
    cookies: Mapping[str, str] | None,
    headers: HeadersLike | None,
    now: float | None,
    jwt_secret: bytes | None,
    role_claim: Sequence[str],
) -> Visitor:
    """Effective visitor context for one request."""
    if cookies is None:
        raw = header(headers, "cookie")
        cookies = parse_cookie_header(raw) if raw else {}
    if country is None:
        country = cookies.get("nf_country") or ""
    if language is None:
        language = cookies.get("nf_lang") or first_language(header(headers, "accept-language"))
    names = frozenset(k.encode("utf-8", "surrogatepass") for k, v in cookies.items() if v)
    roles: frozenset[bytes] = frozenset()
    token = cookies.get("nf_jwt")
    if token and jwt_secret is not None:
        if now is None:
            import time  # only when the caller did not pass virtual time

            now = time.time()
        roles = jwt_roles(token, jwt_secret, tuple(role_claim), now)
    return Visitor(
        country.encode("utf-8", "surrogatepass"),
        language.encode("utf-8", "surrogatepass"),
        names,
        roles,
    )


def jwt_roles(token: str, secret: bytes, claim: tuple[str, ...], now: float) -> frozenset[bytes]:
    """Roles of a valid HS256 token whose ``exp`` is after ``now``; else none."""
    verified = _verify(token, secret, claim)
    if verified is None:
        return frozenset()
    exp, roles = verified
    return roles if exp > now else frozenset()


@lru_cache(maxsize=4096)
def _verify(token: str, secret: bytes, claim: tuple[str, ...]) -> tuple[float, frozenset[bytes]] | None:
    """Signature, algorithm and claims of a token (cached: tokens repeat per visitor)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        head = json.loads(_b64(parts[0]))
        body = json.loads(_b64(parts[1]))
        sig = _b64(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(head, dict) or head.get("alg") != "HS256" or not isinstance(body, dict):
        return None
    mac = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode("ascii", "replace"), hashlib.sha256)
    if not hmac.compare_digest(mac.digest(), sig):
        return None
    exp = body.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    node: Any = body
    for step in claim:
        node = node.get(step) if isinstance(node, dict) else None
    if not claim:
        node = None
    if isinstance(node, str):
        roles = frozenset([node.encode("utf-8", "surrogatepass")])
    elif isinstance(node, list):
        roles = frozenset(r.encode("utf-8", "surrogatepass") for r in node if isinstance(r, str))
    else:
        roles = frozenset()
    return float(exp), roles


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(
    secret: str | bytes,
    roles: Sequence[str] | str,
    *,
    exp: float,
    claim: str = DEFAULT_ROLE_CLAIM,
    alg: str = "HS256",
) -> str:
    """Make an HS256 token carrying ``roles`` at ``claim`` (for tests and the CLI).

    Args:
        secret: the site's JWT secret.
        roles: a role or a list of roles.
        exp: expiry, Unix seconds.
        claim: dotted path of the roles claim.
        alg: the header's algorithm name (anything but HS256 makes a token that fails).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    body: dict[str, Any] = {"exp": exp}
    node = body
    steps = claim.split(".") if claim else []
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    if steps:
        node[steps[-1]] = list(roles) if not isinstance(roles, str) else roles
    head = _b64e(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64e(json.dumps(body, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{_b64e(sig)}"
