"""The `ats` command. Each command group lives in its own module and registers itself on `app`.

This package is the composition root: it is the only part of `ats` that may reach into `db`, `flows`
and `monitor`, and it does so lazily inside command functions so that `import ats` stays free of them.
"""

from __future__ import annotations

from ats.cli.app import app, main
from ats.cli import config_cmds  # noqa: F401  (registers commands)

__all__ = ["app", "main"]
