"""`PreemptionGuard`: SIGTERM turned into a flag that the training loop polls between steps to
save a last checkpoint and exit cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)


class PreemptionGuard:
    """SIGTERM (preemption) → `requested`, polled by the training loop to save and exit cleanly.

    Cloud TPU/GPU preemption and `kill` send SIGTERM with a grace period; instead of dying in the
    middle of a step, the handler only sets a flag. The loop checks `guard.requested` after each
    step, saves a checkpoint with `force=True`, waits for it and returns. The previous handlers
    come back on exit from the `with` block.

    Example:
        with PreemptionGuard() as guard:
            for step in ...:
                ...
                if guard.requested:
                    ckpt.save(step, state, force=True)
                    break
        ckpt.close()

    Args:
      signals: the signals to catch (default SIGTERM).
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM,)):
        if not signals:
            raise ValueError("signals must name at least one signal, got an empty sequence")
        self.signals = tuple(signal.Signals(s) for s in signals)
        self._event = threading.Event()
        self._previous: dict[signal.Signals, Any] = {}
        self.received: signal.Signals | None = None

    @property
    def requested(self) -> bool:
        """Whether one of the signals arrived since `__enter__`."""
        return self._event.is_set()

    def requested_on_any_process(self) -> bool:
        """`requested` of any process (a collective: every process must call it at one step)."""
        if jax.process_count() == 1:
            return self.requested
        flags = multihost_utils.process_allgather(np.array([self.requested], np.int32))
        return bool(np.any(flags))

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signal.Signals(signum)
        logger.warning("received %s: saving a checkpoint and stopping", self.received.name)
        self._event.set()

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("PreemptionGuard must be entered in the main thread (signals)")
        self._event.clear()
        self.received = None
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
