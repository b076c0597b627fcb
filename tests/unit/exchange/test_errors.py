"""Every Binance error code and HTTP status maps to the typed error the caller can act on."""

from __future__ import annotations

import pytest

from ats.exchange import errors
from ats.exchange.errors import (
    NO_CHANGE_CODES,
    UNKNOWN_503_MSG,
    AccountInactive,
    AuthError,
    BadRequest,
    ClosePositionStopExists,
    DefiniteFailure,
    DuplicateClientId,
    ExchangeError,
    ExchangeUnavailable,
    FilterRejected,
    InsufficientMargin,
    InvalidSymbol,
    InvalidTimestamp,
    IpBanned,
    ListenKeyNotFound,
    MarginTypeLocked,
    NotionalTooSmall,
    OrderNotFound,
    PositionModeError,
    RateLimited,
    ReduceOnlyRejected,
    Throttled,
    UnknownOutcome,
    UseAlgoEndpoint,
    WouldImmediatelyTrigger,
    banned_until_ms,
    error_for,
)

CODES: dict[int, type[ExchangeError]] = {
    -1003: RateLimited,
    -1008: Throttled,
    -1015: RateLimited,
    -1021: InvalidTimestamp,
    -1022: AuthError,
    -1102: BadRequest,
    -1111: FilterRejected,
    -1121: InvalidSymbol,
    -1125: ListenKeyNotFound,
    -2011: OrderNotFound,
    -2013: OrderNotFound,
    -2014: AuthError,
    -2015: AuthError,
    -2018: InsufficientMargin,
    -2019: InsufficientMargin,
    -2021: WouldImmediatelyTrigger,
    -2022: ReduceOnlyRejected,
    **dict.fromkeys((-4001, -4002, -4003, -4004, -4005, -4006, -4007, -4013, -4014), FilterRejected),
    -4015: BadRequest,
    **dict.fromkeys((-4016, -4023, -4024, -4029, -4030), FilterRejected),
    -4047: MarginTypeLocked,
    -4048: MarginTypeLocked,
    -4050: InsufficientMargin,
    -4051: InsufficientMargin,
    -4061: PositionModeError,
    -4067: PositionModeError,
    -4068: PositionModeError,
    -4109: AccountInactive,
    -4116: DuplicateClientId,
    -4118: ReduceOnlyRejected,
    -4120: UseAlgoEndpoint,
    -4130: ClosePositionStopExists,
    -4131: FilterRejected,
    -4164: NotionalTooSmall,
}


@pytest.mark.parametrize(("code", "expected"), sorted(CODES.items()))
def test_every_documented_code_maps_to_its_type(code: int, expected: type[ExchangeError]) -> None:
    for mutating in (True, False):
        error = error_for(400, code, "msg", mutating=mutating)
        assert type(error) is expected
        assert isinstance(error, DefiniteFailure)
        assert (error.code, error.http_status, error.msg) == (code, 400, "msg")
        assert str(error) == f"[{code}] msg"


def test_the_code_table_is_covered_completely() -> None:
    assert dict(errors._BY_CODE) == CODES


def test_no_change_codes_are_the_idempotent_settings_answers() -> None:
    assert {-4046, -4059} == NO_CHANGE_CODES
    assert type(error_for(400, -4046, "No need to change margin type.")) is BadRequest


def test_the_503_unknown_error_is_an_unknown_outcome_for_writes() -> None:
    assert type(error_for(503, -1000, UNKNOWN_503_MSG)) is UnknownOutcome
    assert type(error_for(503, None, UNKNOWN_503_MSG)) is UnknownOutcome
    assert type(error_for(503, None, UNKNOWN_503_MSG, mutating=False)) is ExchangeUnavailable


@pytest.mark.parametrize(
    ("status", "code", "msg"),
    [
        (503, None, "Service Unavailable."),
        (503, -1001, "Service Unavailable."),  # the sim's fault body; a gateway may say it after forwarding
        (503, -1001, "Internal error; unable to process your request. Please try again."),
        (408, None, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
        (400, -1007, "Timeout waiting for response from backend server."),
        (400, -1006, "An unexpected response was received from the message bus. Execution status unknown."),
        (400, -1000, "An unknown error occurred while processing the request."),
        (500, None, "HTTP 500 Internal Server Error"),
        (502, None, "HTTP 502 Bad Gateway"),
        (504, None, "HTTP 504 Gateway Timeout"),
        (503, -1008, "Request throttled by system-level protection."),
        (403, None, "HTTP 403 Forbidden"),  # a WAF's HTML page
        (403, -1001, "Service Unavailable."),
        (400, None, "HTTP 400 Bad Request"),  # no Binance body: a proxy's answer
        (404, None, "HTTP 404 Not Found"),
        (302, None, "HTTP 302 Found"),
    ],
)
def test_answers_that_are_not_binance_refusals_are_unknown_outcomes_of_writes(
    status: int, code: int | None, msg: str
) -> None:
    """Only Binance refusing with its own code proves a write was not executed; anything else is looked up."""
    assert not errors.is_definite_refusal(status, code)
    assert type(error_for(status, code, msg, mutating=True)) is UnknownOutcome


@pytest.mark.parametrize(
    ("status", "code", "msg"),
    [
        (503, None, "Service Unavailable."),
        (503, -1001, "Internal error; unable to process your request. Please try again."),
        (408, None, "Timeout waiting for response from backend server."),
        (400, -1007, "Timeout waiting for response from backend server."),
        (500, None, "HTTP 500 Internal Server Error"),
        (403, None, "HTTP 403 Forbidden"),
    ],
)
def test_the_same_answers_to_reads_are_temporary_failures(status: int, code: int | None, msg: str) -> None:
    assert type(error_for(status, code, msg, mutating=False)) is ExchangeUnavailable


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, -2019, InsufficientMargin),
        (400, -2021, WouldImmediatelyTrigger),
        (400, -4116, DuplicateClientId),
        (400, -9999, BadRequest),  # a code this client does not know yet: still Binance refusing it
        (400, -1001, BadRequest),
        (200, -2022, ReduceOnlyRejected),  # an error body under 200
    ],
)
def test_binance_refusals_with_a_code_are_definite(status: int, code: int, expected: type[ExchangeError]) -> None:
    assert errors.is_definite_refusal(status, code)
    assert type(error_for(status, code, "msg", mutating=True)) is expected


def test_rate_limits_and_bans() -> None:
    limited = error_for(429, -1003, "Too many requests; current limit of IP(1.2.3.4) is 2400 requests per minute.")
    assert type(limited) is RateLimited
    msg = "Way too many requests; IP(1.2.3.4) banned until 1767225720000. Please use the websocket for live updates."
    banned = error_for(418, -1003, msg)
    assert isinstance(banned, IpBanned)
    assert banned.until_ms == 1_767_225_720_000
    assert isinstance(error_for(400, -1003, msg), IpBanned)  # a ban message is a ban whatever the status
    assert banned_until_ms("Too many requests") is None


def test_other_statuses_of_reads() -> None:
    assert type(error_for(403, None, "WAF", mutating=False)) is ExchangeUnavailable
    assert type(error_for(404, None, "Not Found", mutating=False)) is BadRequest
    assert type(error_for(400, -9999, "new code", mutating=False)) is BadRequest
    assert type(error_for(302, None, "redirect", mutating=False)) is ExchangeError
