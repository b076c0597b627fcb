"""Structured logging on the standard library, with secrets redacted from every record.

Use `get_logger(__name__).info("entry filled", symbol="BTCUSDT", qty="0.010")`: the event is a short
phrase, the fields are key=value pairs (console) or JSON keys. Every handler installed by
`configure_logging` passes records through `redact`, which removes registered secret values, Telegram
bot tokens in URLs and Binance signatures, so neither a log line nor an exception text can leak them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

_REDACTED = "**********"
# Longest first, so a secret that contains another is removed whole. Replaced, never mutated: `redact` runs on
# any thread while a client being built registers its keys on another.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()
_PATTERNS = (
    re.compile(r"(bot)\d{5,}:[A-Za-z0-9_-]{20,}"),  # Telegram bot token inside a URL
    re.compile(r"(signature=)[0-9a-fA-F]{16,}"),
    re.compile(r"(X-MBX-APIKEY['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+", re.IGNORECASE),
    re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+:)[^@\s]+(@)"),  # password in a database URL
)


def register_secret(value: str | None) -> None:
    """Make a secret value unprintable through logging from now on."""
    global _secrets
    if value and len(value) >= 4:
        with _secrets_lock:
            if value not in _secrets:
                _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _REDACTED + (m.group(2) if m.lastindex == 2 else ""), text)
    return text


class RedactingFilter(logging.Filter):
    """Renders the message (with args and exception) once, redacted, so handlers print only clean text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            # Any value that is not a plain number prints as text (an exception, a URL object): redact that text.
            record.fields = {k: _redacted_field(v) for k, v in fields.items()}
        return True


def _redacted_field(value: Any) -> Any:
    plain = _plain(value)
    return redact(plain) if isinstance(plain, str) else plain


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).strftime("%H:%M:%S")
        line = f"{ts} {record.levelname:<7} {record.name:<18} {record.getMessage()}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": redact(str(getattr(record, "event", None) or record.getMessage())),
        }
        payload.update({k: _plain(v) for k, v in (getattr(record, "fields", None) or {}).items()})
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (test runners and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        return


class StructLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            # The message carries the fields too, so handlers that only print the message (Prefect's, which ships
            # these lines to the run's page in the UI) lose nothing; the JSON formatter uses the parts.
            message = event + ("  " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items()) if fields else "")
            extra = {"fields": fields, "event": event}
            self._logger.log(level, "%s", message, exc_info=exc_info, extra=extra, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)

    @property
    def stdlib(self) -> logging.Logger:
        return self._logger


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name))


def install_redaction(handlers: Iterable[logging.Handler]) -> None:
    """Add the redacting filter to handlers owned by someone else (Prefect's, pytest's)."""
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def configure_logging(level: str = "INFO", fmt: str = "console", secrets: Iterable[str | None] = ()) -> None:
    """Install one redacting handler on the root logger; quiet the chatty libraries."""
    for secret in secrets:
        register_secret(secret)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_ats_handler", False):
            root.removeHandler(existing)
    handler._ats_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    install_redaction(root.handlers)
    # httpx logs full request URLs at INFO; a Telegram URL carries the bot token.
    for noisy in ("httpx", "httpcore", "websockets", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
