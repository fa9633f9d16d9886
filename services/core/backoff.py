"""Retrying after a Redis error: capped exponential pauses, one structured log line per failure.

Every long-lived loop that talks to Redis (a worker's batch loop, the gateway's job-event
subscription) survives any Redis error the same way: it logs the error's class — what an
operator greps for (``OutOfMemoryError``, ``ReadOnlyError``, ``BusyLoadingError``...) — waits,
and tries again with everything it holds (models, subscriptions' waiters) kept.
"""

from __future__ import annotations

import logging
from typing import Any

FIRST_PAUSE_S = 0.1


class Backoff:
    """0.1 s, 0.2 s, 0.4 s ... up to ``max_s``; back to 0.1 s after a success."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.next_s = min(FIRST_PAUSE_S, max_s)

    def failed(self, exc: BaseException, log: logging.Logger, msg: str, **extra: Any) -> float:
        """Log the failure and return how long to pause before the next try."""
        pause = self.next_s
        log.warning(
            msg,
            extra={
                "error_class": type(exc).__name__,
                "error": str(exc),
                "retry_in_s": pause,
                **extra,
            },
        )
        self.next_s = min(self.next_s * 2, self.max_s)
        return pause

    def succeeded(self) -> None:
        self.next_s = min(FIRST_PAUSE_S, self.max_s)
