"""The `ats` command. Each command group lives in its own module and registers itself on `app`.

This package is the composition root: it is the only part of `ats` that may reach into `db`, `flows`
and `monitor`, and it does so lazily inside command functions so that `import ats` stays free of them.
"""

from __future__ import annotations

from cli import (  # noqa: F401  (each module registers its commands on `app`)
    backtest_cmds,
    config_cmds,
    data_cmds,
    db_cmds,
    demo_cmds,
    deploy_cmds,
    flow_cmds,
    monitor_cmds,
    sim_cmds,
)
from cli.app import app, main

__all__ = ["app", "main"]
