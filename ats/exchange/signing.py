"""Request encoding and signing for Binance SIGNED endpoints.

The query string is built and percent-encoded exactly once; that string is what gets signed and what gets
sent, so a client id with ':' or '/' cannot make the signed bytes differ from the transmitted ones.
HMAC-SHA256 keys give a hex signature; Ed25519 keys give a base64 signature (percent-encoded on the wire).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Literal, Protocol
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

ParamValue = str | int | Decimal | bool | Enum
Params = Mapping[str, ParamValue | None]
KeyType = Literal["hmac", "ed25519"]


def format_decimal(value: Decimal) -> str:
    """Plain notation without exponent or trailing zeros: 1E+2 -> '100', 0.0100 -> '0.01', -0 -> '0'.

    Works on the exact digits (no context rounding), so no value ever changes on its way to the wire.
    """
    if not value.is_finite():
        raise ValueError(f"cannot send a non-finite number: {value}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def encode_value(value: ParamValue) -> str:
    """One parameter value as Binance expects it (booleans lower-case, Decimals in plain notation)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"unsupported parameter type {type(value).__name__}; money must be Decimal, not float")


def encode_params(params: Params) -> str:
    """The percent-encoded query string (RFC 3986 unreserved characters kept), in the given order, None skipped."""
    return "&".join(
        f"{quote(key, safe='')}={quote(encode_value(value), safe='')}"
        for key, value in params.items()
        if value is not None
    )


class Signer(Protocol):
    """Signs the exact payload that will be sent; returns the value for the `signature` parameter."""

    def sign(self, payload: str) -> str: ...


class HmacSigner:
    """HMAC-SHA256 with the API secret, hex encoded."""

    __slots__ = ("_key",)

    def __init__(self, secret: SecretStr) -> None:
        self._key = secret.get_secret_value().encode()

    def sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(**********)"


class Ed25519Signer:
    """Ed25519 with a PEM private key (PKCS#8), base64 encoded."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: SecretStr) -> None:
        try:
            key = load_pem_private_key(private_key_pem.get_secret_value().encode(), password=None)
        except (ValueError, TypeError):
            # The library's message could quote the input; never echo key material.
            raise ValueError("the API secret is not a PEM Ed25519 private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the API secret is a PEM private key, but not an Ed25519 one")
        self._key = key

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode())).decode()

    def __repr__(self) -> str:
        return "Ed25519Signer(**********)"


def make_signer(secret: SecretStr, key_type: KeyType) -> Signer:
    if key_type == "hmac":
        return HmacSigner(secret)
    if key_type == "ed25519":
        return Ed25519Signer(secret)
    raise ValueError(f"unknown key type {key_type!r}; expected 'hmac' or 'ed25519'")


def signed_query(params: Params, *, timestamp_ms: int, recv_window_ms: int, signer: Signer) -> str:
    """`params` + recvWindow + timestamp, encoded once, with `signature` appended last."""
    payload = encode_params({**params, "recvWindow": recv_window_ms, "timestamp": timestamp_ms})
    return f"{payload}&signature={quote(signer.sign(payload), safe='')}"
