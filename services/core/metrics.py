"""Prometheus metric definitions (DESIGN §7), declared once so every service uses the same names.

The full set, with worker-side histograms and cost, is built out by its own issue; these are the
ones the gateway needs now.
"""

from __future__ import annotations

from prometheus_client import Counter

JOBS_SUBMITTED = Counter(
    "posefleet_jobs_submitted_total", "Jobs accepted by the gateway", ["pipeline"]
)
JOBS_REJECTED = Counter(
    "posefleet_jobs_rejected_total", "Submissions refused by the gateway", ["pipeline", "code"]
)
