"""Request encoding and signing: the bytes signed are the bytes sent."""

from __future__ import annotations

import base64
from decimal import Decimal
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from ats.domain import Side
from ats.exchange.signing import (
    Ed25519Signer,
    HmacSigner,
    ParamValue,
    encode_params,
    format_decimal,
    make_signer,
    signed_query,
)

# developers.binance.com/docs/derivatives/usds-margined-futures/general-info,
# "SIGNED Endpoint Examples for POST /fapi/v1/order - HMAC Keys", Example 1.
DOC_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"  # public test vector
DOC_QUERY = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943"
)
DOC_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"  # test vector


def test_hmac_matches_the_official_worked_example() -> None:
    assert HmacSigner(SecretStr(DOC_SECRET)).sign(DOC_QUERY) == DOC_SIGNATURE


def test_signed_query_rebuilds_the_official_example_byte_for_byte() -> None:
    params: dict[str, ParamValue] = {
        "symbol": "BTCUSDT",
        "side": Side.BUY,
        "type": "LIMIT",
        "quantity": Decimal("1"),
        "price": Decimal("9000.00"),
        "timeInForce": "GTC",
    }
    signer = HmacSigner(SecretStr(DOC_SECRET))
    query = signed_query(params, timestamp_ms=1591702613943, recv_window_ms=5000, signer=signer)
    assert query == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"


def test_client_ids_with_colon_and_slash_are_encoded_once_and_signed_as_sent() -> None:
    signer = HmacSigner(SecretStr("s"))
    query = signed_query({"newClientOrderId": "ats:abc/E_1.x-y"}, timestamp_ms=1, recv_window_ms=5000, signer=signer)
    payload, _, signature = query.rpartition("&signature=")
    assert payload == "newClientOrderId=ats%3Aabc%2FE_1.x-y&recvWindow=5000&timestamp=1"
    assert signature == signer.sign(payload)
    assert unquote(payload.split("&")[0].split("=")[1]) == "ats:abc/E_1.x-y"


def test_encode_params_formats_values_the_way_binance_reads_them() -> None:
    encoded = encode_params(
        {
            "reduceOnly": True,
            "priceProtect": False,
            "quantity": Decimal("0.0100"),
            "price": Decimal("9E+4"),
            "side": Side.SELL,
            "limit": 500,
            "skipped": None,
        }
    )
    assert encoded == "reduceOnly=true&priceProtect=false&quantity=0.01&price=90000&side=SELL&limit=500"


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        encode_params({"price": 0.1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1E+2", "100"),
        ("0.0100", "0.01"),
        ("-0.000", "0"),
        ("123.4500E-10", "0.000000012345"),
        ("91000.10", "91000.1"),
        ("5", "5"),
        ("0.12299999999999999999999999999999", "0.12299999999999999999999999999999"),
    ],
)
def test_format_decimal(value: str, text: str) -> None:
    assert format_decimal(Decimal(value)) == text


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_format_decimal_is_plain_and_exact(value: Decimal) -> None:
    text = format_decimal(value)
    assert "E" not in text.upper()
    assert Decimal(text) == value
    if "." in text:
        assert not text.endswith("0")
        assert not text.endswith(".")


def test_format_decimal_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        format_decimal(Decimal("NaN"))


def ed25519_pem() -> tuple[str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return pem, key


def test_ed25519_signature_verifies_and_is_percent_encoded_on_the_wire() -> None:
    pem, key = ed25519_pem()
    signer = make_signer(SecretStr(pem), "ed25519")
    query = signed_query({"symbol": "BTCUSDT"}, timestamp_ms=1, recv_window_ms=5000, signer=signer)
    payload, _, wire_signature = query.rpartition("&signature=")
    assert "+" not in wire_signature
    assert "/" not in wire_signature
    assert "=" not in wire_signature
    key.public_key().verify(base64.b64decode(unquote(wire_signature)), payload.encode())


def test_a_bad_ed25519_key_is_reported_without_echoing_it() -> None:
    sentinel = "-----BEGIN PRIVATE KEY-----\nSENTINELSECRET\n-----END PRIVATE KEY-----"
    with pytest.raises(ValueError, match="not a PEM Ed25519 private key") as info:
        Ed25519Signer(SecretStr(sentinel))
    assert "SENTINELSECRET" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_signers_never_show_their_key() -> None:
    pem, _ = ed25519_pem()
    for signer in (HmacSigner(SecretStr("SENTINELSECRET")), Ed25519Signer(SecretStr(pem))):
        assert "SENTINELSECRET" not in repr(signer)
        assert "PRIVATE" not in repr(signer)
    with pytest.raises(ValueError, match="unknown key type"):
        make_signer(SecretStr("x"), "rsa")  # type: ignore[arg-type]
