"""The runtime tests' fleet harness (a sandbox, a migrated database, a worker)."""

from tests.worker.conftest import make_fleet

__all__ = ["make_fleet"]
