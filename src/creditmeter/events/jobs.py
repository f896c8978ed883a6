"""The worker that runs the outbox's jobs beside the requests: a daemon thread that calls
:meth:`CreditMeter.work` (creditmeter/service/jobs.py says how a job runs)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from creditmeter.meter import CreditMeter

log = logging.getLogger(__name__)


class Worker:
    """Runs due jobs in a daemon thread until :meth:`stop`: at once when the library
    queues one in this process, else every ``interval`` seconds."""

    def __init__(self, meter: CreditMeter, *, interval: float = 1.0, batch: int = 20) -> None:
        self.meter = meter
        self.interval = interval
        self.batch = batch
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="creditmeter-worker", daemon=True)
        meter.job_listeners.append(self.wake)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self.meter.job_listeners.remove(self.wake)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self.meter.work(limit=self.batch)
            except Exception:  # the database may be away for a while: try again later
                log.exception("taking jobs failed")
                ran = 0
            if ran < self.batch:
                self._wake.wait(self.interval)
                self._wake.clear()
