"""The `ats` command. Each command group lives in its own module and registers itself on `app`.

This package is the composition root: it is the only part of `ats` that may reach into `db`, `flows`
and `monitor`, and it does so lazily inside command functions so that `import ats` stays free of them.
"""

from __future__ import annotations

from ats.cli import config_cmds, db_cmds  # noqa: F401  (each module registers its commands on `app`)
from ats.cli import flow_cmds as _flow_cmds  # noqa: F401
from ats.cli import monitor_cmds as _monitor_cmds  # noqa: F401
from ats.cli import sim_cmds as _sim_cmds  # noqa: F401
from ats.cli.app import app, main

__all__ = ["app", "main"]
