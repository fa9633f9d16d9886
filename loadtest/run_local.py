"""``make loadtest``: start the local stack, run a bounded headless locust against it (loopback
only), write CSV and HTML reports under ``out/``, stop the stack."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from loadtest.stacks import ROOT, local_stack
from services.cli.redis_server import free_port


def locust_command(
    host: str,
    users: int,
    spawn_rate: float,
    run_time: str,
    csv_prefix: Path,
    html: Path | None = None,
) -> list[str]:
    """A bounded headless run of the project's locustfile (also the suite's smoke test)."""
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        run_time,
        "--csv",
        str(csv_prefix),
        "--only-summary",
    ]
    return cmd + (["--html", str(html)] if html else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", default="30s", help="locust --run-time")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--spawn-rate", type=float, default=2)
    parser.add_argument("--pipelines", default="pose", help="comma-separated")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "loadtest")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    port = free_port()
    log = args.out.with_suffix(".stack.log")
    print(f"starting the stack on port {port} (log: {log})", flush=True)
    with local_stack(port, log):
        cmd = locust_command(
            f"http://127.0.0.1:{port}",
            args.users,
            args.spawn_rate,
            args.duration,
            args.out,
            html=args.out.with_suffix(".html"),
        )
        env = {**os.environ, "LOADTEST_PIPELINES": args.pipelines}
        result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    print(f"reports: {args.out}_stats.csv, {args.out.with_suffix('.html')}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
