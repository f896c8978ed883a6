"""The HTTP client is for apps that talk to a creditmeter server: importing it loads no
database, migration or server code."""

from __future__ import annotations

import subprocess
import sys

LOADED = (
    "import sys, creditmeter.client; "
    "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | "
    "{m for m in sys.modules if m.startswith('creditmeter.')})))"
)


def test_importing_the_client_loads_no_database_code() -> None:
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", LOADED], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "creditmeter.client" in loaded
    assert not loaded & {"sqlalchemy", "alembic", "psycopg", "fastapi", "stripe"}
    assert not {m for m in loaded if m.startswith(("creditmeter.store", "creditmeter.meter"))}


def test_the_library_still_opens_from_the_package() -> None:
    import creditmeter

    with creditmeter.CreditMeter("sqlite://") as meter:
        assert meter.list_accounts(limit=1) == []
    assert creditmeter.LockTimeout.__module__ == "creditmeter.store.database"
