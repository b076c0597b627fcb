"""Shared test setup. Fixtures live in tests/fixtures/*, one module per area, registered here."""

import pytest

pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.sim",
    "tests.fixtures.db",
    "tests.fixtures.prefect",
    "tests.fixtures.monitor",
    "tests.fixtures.telegram",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Grouped tests first (the real Prefect stack, which mostly waits on real time): under xdist its worker
    starts it at once and the other workers run everything else meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
