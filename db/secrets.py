"""Secrets kept in Prefect Secret blocks (ATS_EXCHANGE__API_KEY_BLOCK, ..._API_SECRET_BLOCK, ATS_TELEGRAM__TOKEN_BLOCK).

The settings model names the blocks; reading them needs Prefect, so it happens here, in the shell, for the flows,
the monitor and the CLI alike. A secret also given directly (environment or file) wins over its block. It lives in
db/, the shell's ground floor, because Prefect keeps the blocks in its database and because both tasks/ and the
monitor (which imports no tasks/) read them.
"""

from __future__ import annotations

from typing import Any

from ats.config import ConfigError, Settings
from ats.log import register_secret


async def with_secret_blocks(settings: Settings) -> Settings:
    """The settings with every secret that names a Prefect Secret block read from it (registered for redaction)."""
    wanted = settings.secret_blocks()
    if not wanted:
        return settings
    from prefect.blocks.system import Secret  # Prefect only when a block is named (the monitor starts faster)

    values: dict[tuple[str, str], str] = {}
    for (section, name), block in wanted.items():
        try:
            secret: Any = await Secret.aload(block)
        except ValueError as exc:  # Prefect's "Unable to find block document named ..."
            raise ConfigError(f"{section}.{name}_block: Prefect Secret block {block!r} not found ({exc})") from None
        value = str(secret.get())
        register_secret(value)
        values[(section, name)] = value
    return settings.with_secrets(values)
