"""The performance targets (issue 16, docs/performance.md) checked against one bench run's rows:
PASS or FAIL per target, printed under the table. Ratios only: every row of a run was measured
on the same machine in the same minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.table import Table

from loadtest.hey import Row

# the rows of the peers we must be ahead of (loadtest/peers.py); every other row is our own
PEERS = ("naive", "ray serve")


@dataclass(frozen=True)
class Peer:
    name: str
    p50_c1_ms: float | None
    saturated_img_s: float | None


@dataclass(frozen=True)
class Measured:
    models_ms: float  # the two models' own time per image: the faster of their two settings
    posefleet_p50_c1_ms: float
    posefleet_img_s: float
    ceiling_jobs_s: float
    in_worker_ratio: float  # workers' handler time / the same handlers in a plain process
    peers: list[Peer] = field(default_factory=list)

    @classmethod
    def of(cls, rows: list[Row], in_worker_ratio: float) -> Measured:
        def find(name: str, saturated: bool) -> Row | None:
            return next(
                (r for r in rows if r.name == name and (r.concurrency > 1) == saturated), None
            )

        def required(name: str, saturated: bool) -> Row:
            row = find(name, saturated)
            assert row is not None, f"no {name} row"
            return row

        models = min(required(n, False).pct(50) for n in ("models (ort defaults)", "models"))
        peers = []
        for name in dict.fromkeys(r.name for r in rows if r.name in PEERS):
            single, busy = find(name, False), find(name, True)
            peers.append(
                Peer(
                    name,
                    single.pct(50) if single else None,
                    busy.images_per_s if busy else None,
                )
            )
        return cls(
            models_ms=models,
            posefleet_p50_c1_ms=required("posefleet", False).pct(50),
            posefleet_img_s=required("posefleet", True).images_per_s,
            ceiling_jobs_s=required("ceiling (no-op)", True).images_per_s,
            in_worker_ratio=in_worker_ratio,
            peers=peers,
        )


@dataclass(frozen=True)
class Verdict:
    target: str
    wanted: str
    measured: str
    passed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate(m: Measured) -> list[Verdict]:
    models_img_s = 1000 / m.models_ms
    verdicts = [
        Verdict(
            "P1 pose saturated throughput",
            f">= 0.9 x the models' own {models_img_s:.1f} img/s",
            f"{m.posefleet_img_s:.1f} img/s = {m.posefleet_img_s / models_img_s:.2f} x",
            m.posefleet_img_s >= 0.9 * models_img_s,
        ),
        Verdict(
            "P2 p50 at concurrency 1",
            f"<= the models' own {m.models_ms:.1f} ms + 15 ms",
            f"{m.posefleet_p50_c1_ms:.1f} ms = models {m.posefleet_p50_c1_ms - m.models_ms:+.1f}",
            m.posefleet_p50_c1_ms <= m.models_ms + 15,
        ),
        Verdict(
            "P4 single-person images end to end",
            ">= 20 img/s",
            f"{m.posefleet_img_s:.1f} img/s",
            m.posefleet_img_s >= 20,
        ),
        Verdict(
            "P5 no-op transport ceiling (hey)",
            ">= 1000 finished jobs/s",
            f"{m.ceiling_jobs_s:.0f} jobs/s",
            m.ceiling_jobs_s >= 1000,
        ),
        Verdict(
            "same handler inside a worker",
            "<= 1.05 x a plain process",
            f"{m.in_worker_ratio:.2f} x",
            m.in_worker_ratio <= 1.05,
        ),
    ]
    for peer in m.peers:
        faster = peer.saturated_img_s is None or m.posefleet_img_s >= peer.saturated_img_s
        quicker = peer.p50_c1_ms is None or m.posefleet_p50_c1_ms <= peer.p50_c1_ms
        theirs = [
            f"{peer.saturated_img_s:.1f} img/s" if peer.saturated_img_s is not None else "",
            f"p50 {peer.p50_c1_ms:.1f} ms" if peer.p50_c1_ms is not None else "",
        ]
        verdicts.append(
            Verdict(
                f"ahead of {peer.name}",
                "more img/s saturated, lower p50 at c=1",
                f"theirs {', '.join(t for t in theirs if t)}",
                faster and quicker,
            )
        )
    return verdicts


def targets_table(verdicts: list[Verdict]) -> Table:
    table = Table(title="targets (docs/performance.md)")
    for column in ("target", "wanted", "measured", "result"):
        table.add_column(column)
    for v in verdicts:
        table.add_row(
            v.target, v.wanted, v.measured, "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]"
        )
    return table
