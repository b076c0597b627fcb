"""Typed exchange errors, mapped from Binance's {"code", "msg"} bodies and HTTP statuses.

The one distinction that protects money: `UnknownOutcome` (the request may have been executed) is kept
apart from definite failures. After an UnknownOutcome, look the order up by client id before retrying.
A write is definitely refused only when Binance itself says so with one of its error codes; any other answer
(a 5xx, a 403, an HTML page, a body without a code) may come from a gateway that forwarded the request before
failing, so it is an UnknownOutcome. Only "could not connect" proves a write never left (ExchangeUnavailable).
Messages never carry request parameters, headers or URLs with query strings (no secrets, no signatures).
"""

from __future__ import annotations

import re


class ExchangeError(Exception):
    """Any error answered by (or on the way to) the exchange."""

    def __init__(self, msg: str, *, code: int | None = None, http_status: int | None = None) -> None:
        self.code = code
        self.msg = msg
        self.http_status = http_status
        prefix = f"[{code}] " if code is not None else ""
        super().__init__(f"{prefix}{msg}")


class DefiniteFailure(ExchangeError):
    """The request was not executed; retrying it is safe."""


class UnknownOutcome(ExchangeError):
    """A write may or may not have been executed: a timeout or a broken connection after sending, or any answer
    that is not Binance refusing it with an error code (any 5xx, 403, 408, an HTML page, a missing body)."""


class ExchangeUnavailable(DefiniteFailure):
    """A write that never reached the exchange (could not connect), or any failed read: retrying is safe."""


class RateLimited(DefiniteFailure):
    """HTTP 429 or -1003: the request weight or order count limit was broken."""

    def __init__(self, msg: str, *, retry_after_s: float | None = None, **kw: int | None) -> None:
        super().__init__(msg, **kw)
        self.retry_after_s = retry_after_s


class IpBanned(DefiniteFailure):
    """HTTP 418: this IP is banned; nothing may be sent until `until_ms`."""

    def __init__(self, msg: str, *, until_ms: int | None = None, **kw: int | None) -> None:
        super().__init__(msg, **kw)
        self.until_ms = until_ms


class Throttled(DefiniteFailure):
    """-1008: request throttled by system-level protection."""


class InvalidTimestamp(DefiniteFailure):
    """-1021: timestamp outside recvWindow; resync the clock once, then retry."""


class AuthError(DefiniteFailure):
    """-1022 bad signature, -2014 bad key format, -2015 invalid key, IP or permissions."""


class InvalidSymbol(DefiniteFailure):
    """-1121."""


class BadRequest(DefiniteFailure):
    """A request the exchange refused as malformed (missing or invalid parameters)."""


class FilterRejected(BadRequest):
    """Precision, tick size, step size, percent price: the order broke a symbol filter."""


class NotionalTooSmall(FilterRejected):
    """-4164: notional below the symbol's minimum."""


class OrderNotFound(DefiniteFailure):
    """-2011 (cancel) or -2013 (query): the exchange does not know this order."""


class InsufficientMargin(DefiniteFailure):
    """-2019."""


class WouldImmediatelyTrigger(DefiniteFailure):
    """-2021: the trigger price is already crossed."""


class ReduceOnlyRejected(DefiniteFailure):
    """-2022: a reduce-only order would not reduce the position."""


class DuplicateClientId(DefiniteFailure):
    """-4116: an open order already uses this client id. For an idempotent retry this means 'already placed'."""


class UseAlgoEndpoint(DefiniteFailure):
    """-4120: conditional orders must go to /fapi/v1/algoOrder (since 2025-12-09)."""


class ClosePositionStopExists(DefiniteFailure):
    """-4130: a closePosition stop in this direction already exists."""


class ListenKeyNotFound(DefiniteFailure):
    """-1125: the listenKey expired or never existed; create a new one."""


class PositionModeError(DefiniteFailure):
    """-4061 position side mismatch; or the account is in hedge mode, which this system refuses."""


class MarginTypeLocked(DefiniteFailure):
    """-4047/-4048: margin type cannot change with open orders or a position."""


class AccountInactive(DefiniteFailure):
    """-4109."""


class MalformedResponse(DefiniteFailure):
    """A read was answered with JSON this client cannot understand (nothing changed on the exchange).

    A write answered that way raises UnknownOutcome instead: the exchange accepted something.
    """


# Codes that mean "nothing to do" for idempotent settings calls.
NO_CHANGE_CODES = frozenset({-4046, -4059})

_BY_CODE: dict[int, type[ExchangeError]] = {
    -1003: RateLimited,
    -1008: Throttled,
    -1015: RateLimited,  # too many new orders
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
    -2018: InsufficientMargin,  # balance
    -2019: InsufficientMargin,
    -2021: WouldImmediatelyTrigger,
    -2022: ReduceOnlyRejected,
    -4001: FilterRejected,  # price < 0
    -4002: FilterRejected,  # price > max price
    -4003: FilterRejected,  # quantity < 0
    -4004: FilterRejected,  # quantity < min quantity
    -4005: FilterRejected,  # quantity > max quantity
    -4006: FilterRejected,  # stop price < 0
    -4007: FilterRejected,  # stop price > max price
    -4013: FilterRejected,  # price < min price
    -4014: FilterRejected,  # price not on the tick grid
    -4015: BadRequest,
    -4016: FilterRejected,  # price above the PERCENT_PRICE cap
    -4023: FilterRejected,  # quantity not on the step grid
    -4024: FilterRejected,  # price below the PERCENT_PRICE floor
    -4029: FilterRejected,  # tick size precision
    -4030: FilterRejected,  # step size precision
    -4047: MarginTypeLocked,
    -4048: MarginTypeLocked,
    -4050: InsufficientMargin,  # cross balance
    -4051: InsufficientMargin,  # isolated balance
    -4061: PositionModeError,
    -4067: PositionModeError,  # position mode cannot change with open orders
    -4068: PositionModeError,  # position mode cannot change with a position
    -4109: AccountInactive,
    -4116: DuplicateClientId,
    -4118: ReduceOnlyRejected,  # reduce-only margin check
    -4120: UseAlgoEndpoint,
    -4130: ClosePositionStopExists,
    -4131: FilterRejected,
    -4164: NotionalTooSmall,
}

UNKNOWN_503_MSG = "Unknown error, please check your request or try again later."
# Binance codes that say "status unknown" (unknown error, backend timeout, unexpected answer from the bus).
_UNKNOWN_CODES = frozenset({-1000, -1006, -1007})
_BANNED_UNTIL = re.compile(r"banned until (\d{12,})")


def banned_until_ms(msg: str) -> int | None:
    """The ban end from -1003's message ("... IP(1.2.3.4) banned until 1700000000000. ..."), if present."""
    match = _BANNED_UNTIL.search(msg)
    return int(match.group(1)) if match else None


def is_definite_refusal(http_status: int, code: int | None) -> bool:
    """Whether a write answered this way was certainly not executed: Binance refused it with one of its codes.

    A gateway, proxy or WAF may answer a 5xx (even Binance's "Service Unavailable."), a 403 or an HTML page after
    forwarding the request: such an answer says nothing about whether the matching engine executed it.
    """
    if code is None or code in _UNKNOWN_CODES:
        return False
    return 200 <= http_status < 300 or (400 <= http_status < 500 and http_status not in (403, 408))


def _read_unavailable(http_status: int, code: int | None) -> bool:
    """Whether a read answered this way failed for a reason that may pass (retrying is safe)."""
    return code in _UNKNOWN_CODES or http_status in (403, 408) or http_status >= 500


def error_for(http_status: int, code: int | None, msg: str, *, mutating: bool = True) -> ExchangeError:
    """Map an HTTP status and Binance error body (`code` None when the body carried none) to the typed exception.

    `mutating` says whether the request could change state (POST/PUT/DELETE). Only then can an answer
    mean "maybe executed" (UnknownOutcome); the same answer to a read is a plain ExchangeUnavailable.
    Rate limits (429) and bans (418) are the exchange's limiter refusing the request before it is executed.
    """
    if http_status == 418:
        return IpBanned(msg, until_ms=banned_until_ms(msg), code=code, http_status=http_status)
    if http_status == 429:
        return RateLimited(msg, code=code, http_status=http_status)
    if code == -1003 and banned_until_ms(msg) is not None:
        return IpBanned(msg, until_ms=banned_until_ms(msg), code=code, http_status=http_status)
    if mutating and not is_definite_refusal(http_status, code):
        return UnknownOutcome(msg, code=code, http_status=http_status)
    if not mutating and _read_unavailable(http_status, code):
        return ExchangeUnavailable(msg, code=code, http_status=http_status)
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code](msg, code=code, http_status=http_status)
    if 400 <= http_status < 500:
        return BadRequest(msg, code=code, http_status=http_status)
    return ExchangeError(msg, code=code, http_status=http_status)
