"""``make loadtest``: start the local stack, run a bounded headless locust against it (loopback
only), write CSV and HTML reports under ``out/``, stop the stack."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from loadtest.stacks import ROOT, local_stack
from services.core.redis_server import free_port


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
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "--host",
            f"http://127.0.0.1:{port}",
            "--users",
            str(args.users),
            "--spawn-rate",
            str(args.spawn_rate),
            "--run-time",
            args.duration,
            "--csv",
            str(args.out),
            "--html",
            str(args.out.with_suffix(".html")),
            "--only-summary",
        ]
        env = {**os.environ, "LOADTEST_PIPELINES": args.pipelines}
        result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    print(f"reports: {args.out}_stats.csv, {args.out.with_suffix('.html')}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
