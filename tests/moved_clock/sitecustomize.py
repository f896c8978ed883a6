"""Moves the clock of the Python processes the tests start, as ``pytest --today`` does
the test process's: ``CREDITMETER_TEST_CLOCK_OFFSET`` seconds from the real time,
ticking. ``pytest --today`` puts this directory on ``PYTHONPATH``."""

import os
import time

import time_machine

OFFSET = os.environ.get("CREDITMETER_TEST_CLOCK_OFFSET")
if OFFSET is not None:
    time_machine.travel(time.time() + float(OFFSET), tick=True).start()
