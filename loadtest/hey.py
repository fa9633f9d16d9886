"""Saturated rows driven by a native load generator (Debian's ``hey``, compiled Go), not by
Python: a Python client on the same two cores eats the CPU it is measuring (the no-op ceiling
read 215 jobs/s with httpx clients and 350 with hey on the same stack).

``hey -o csv`` writes one line per request (time, phases, status, offset), from which the row
keeps the latencies of the 200s and counts the 429s and everything else.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from statistics import quantiles

HEY = "hey"


class LoadGeneratorMissing(RuntimeError):
    pass


@dataclass
class Row:
    """One measured configuration: latencies of the requests that succeeded, over ``seconds``."""

    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    rejected: int = 0
    errors: int = 0

    @property
    def images_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    def summary(self, price_per_hour: float) -> dict[str, object]:
        ips = self.images_per_s
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "images": len(self.latencies_ms),
            "seconds": round(self.seconds, 2),
            "images_per_s": round(ips, 2),
            "p50_ms": round(self.pct(50), 1),
            "p95_ms": round(self.pct(95), 1),
            "p99_ms": round(self.pct(99), 1),
            "rejected": self.rejected,
            "errors": self.errors,
            "cost_per_1000_images": round(price_per_hour / (ips * 3600) * 1000, 5) if ips else None,
        }


def require_hey() -> str:
    path = shutil.which(HEY)
    if path is None:
        raise LoadGeneratorMissing(
            "the benchmark drives saturated rows with Debian's `hey`: apt-get install hey "
            "(make bench and .ci/run install it)"
        )
    return path


def hey(
    url: str,
    body: bytes,
    *,
    name: str,
    concurrency: int,
    duration_s: float,
    content_type: str = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> Row:
    """``concurrency`` connections POSTing ``body`` back to back for ``duration_s``."""
    with tempfile.NamedTemporaryFile() as payload:
        payload.write(body)
        payload.flush()
        argv = [require_hey(), "-c", str(concurrency), "-z", f"{duration_s}s", "-t", "120"]
        argv += ["-m", "POST", "-T", content_type, "-D", payload.name, "-o", "csv"]
        for key, value in (headers or {}).items():
            argv += ["-H", f"{key}: {value}"]
        done = subprocess.run(
            [*argv, url], capture_output=True, text=True, check=True, timeout=duration_s + 180
        )
    row = Row(name, concurrency)
    ended = 0.0
    for record in csv.DictReader(io.StringIO(done.stdout)):
        seconds, status = float(record["response-time"]), record["status-code"]
        ended = max(ended, float(record["offset"]) + seconds)
        if status == "200":
            row.latencies_ms.append(seconds * 1000)
        elif status == "429":
            row.rejected += 1
        else:
            row.errors += 1
    row.seconds = ended or duration_s
    return row
