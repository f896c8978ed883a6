"""The sweeper: brings idle accounts up to date on a schedule.

Use cases already bring an account up to date when they touch it; the sweeper does it for
accounts nobody touches, so that an expired hold gives its credits back, and a period
rolls (the unused allowance expires, the new one is issued) at about the time it ends.
Every pass is idempotent, so any number of sweepers (one per server process) can run.
"""

from __future__ import annotations

import logging
import threading

from creditmeter.meter import CreditMeter

log = logging.getLogger(__name__)
BATCH = 500


def sweep_all(meter: CreditMeter) -> int:
    """Bring every account that is due up to date; how many there were."""
    total = 0
    while True:
        swept = meter.sweep(limit=BATCH)
        total += swept
        if swept < BATCH:
            return total


class Sweeper:
    """Sweeps every ``interval`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, meter: CreditMeter, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the sweep interval must be positive")
        self.meter = meter
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="creditmeter-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                swept = sweep_all(self.meter)
            except Exception:  # the database may be away for a while: try again next time
                log.exception("sweep failed")
                continue
            if swept:
                log.info("swept", extra={"accounts": swept})
