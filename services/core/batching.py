"""Collecting a batch from one stage's stream: Triton's dynamic batching, knowing nothing of the
DAG, the handler or metrics (Ray Serve's ``batching.py`` idea: one concern, one file).

Block for the first task, then top up to ``max_batch`` within ``max_delay_ms``. Tasks another
consumer left pending past the visibility timeout come first, checked every quarter of it, so a
crashed worker's tasks are taken over within about 1.25 visibility timeouts.
"""

from __future__ import annotations

import time

from services.core.streams import Delivery, StageStream

# Top-ups poll: Redis expires a BLOCK timeout only on its server cron tick (100 ms at the default
# hz 10), far coarser than a batching window of a few milliseconds.
_TOP_UP_POLL_S = 0.001


class BatchCollector:
    def __init__(
        self,
        stream: StageStream,
        *,
        max_batch: int,
        max_delay_ms: int,
        block_ms: int,
        visibility_timeout_s: float,
    ) -> None:
        self.stream = stream
        self.max_batch = max_batch
        self.max_delay_ms = max_delay_ms
        self.block_ms = block_ms
        self.visibility_timeout_s = visibility_timeout_s
        self._next_claim = 0.0

    def collect(self) -> list[Delivery]:
        """The next batch: reclaimed stale tasks, else what arrives within ``block_ms``
        (empty if nothing does), topped up within the batching window."""
        batch = self._reclaim()
        if not batch:
            batch = self.stream.read(self.max_batch, self.block_ms)
            if not batch:
                return []
        deadline = time.monotonic() + self.max_delay_ms / 1000
        while len(batch) < self.max_batch:
            batch += self.stream.read(self.max_batch - len(batch), None)
            remaining = deadline - time.monotonic()
            if len(batch) >= self.max_batch or remaining <= 0:
                break
            time.sleep(min(remaining, _TOP_UP_POLL_S))
        return batch

    def _reclaim(self) -> list[Delivery]:
        if time.monotonic() < self._next_claim:
            return []
        self._next_claim = time.monotonic() + self.visibility_timeout_s / 4
        return self.stream.claim_stale(int(self.visibility_timeout_s * 1000), self.max_batch)
