"""Shared test setup. Fixtures live in tests/fixtures/*, one module per area, registered here."""

pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.sim",
    "tests.fixtures.db",
    "tests.fixtures.prefect",
    "tests.fixtures.monitor",
]
