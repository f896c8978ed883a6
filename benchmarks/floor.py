"""The HTTP stack's own floor: benchmark 2's requests answered by empty endpoints.

The same uvicorn, FastAPI and pydantic as the service, the same workers (each on its own
socket, as ``creditmeter serve --workers N`` runs them) and the service's own request
bodies, validated as it validates them, but no database, no authentication and no
logging: what a pair costs before creditmeter does anything. Run as
``python -m benchmarks.floor --port P --workers N``.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI

from creditmeter.api.schemas.metering import HoldCreate, HoldSettle
from creditmeter.cli import workers


def create() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/holds")
    def authorize(body: HoldCreate) -> dict[str, Any]:
        return {"id": "hold_1", "account": body.account, "credits": 1_000, "status": "pending"}

    @app.post("/v1/holds/{hold_id}/settle")
    def settle(hold_id: str, body: HoldSettle) -> dict[str, Any]:
        return {"hold_id": hold_id, "usage": body.usage, "status": "settled"}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = {
        "app": "benchmarks.floor:create",
        "factory": True,
        "host": "127.0.0.1",
        "port": args.port,
        "log_level": "warning",
        "access_log": False,
    }
    workers.Supervisor(config, args.workers, "127.0.0.1", args.port).run()


if __name__ == "__main__":
    main()
