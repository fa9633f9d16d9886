"""``make loadtest``: start the local stack, run a bounded headless locust against it (loopback
only), write CSV and HTML reports under ``out/``, stop the stack."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.core.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]


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
    with log.open("wb") as sink:
        stack = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--port", str(port)],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        print(f"starting the stack on port {port} (log: {log})", flush=True)
        while "Posefleet is up" not in log.read_text(errors="replace"):
            if stack.poll() is not None or time.monotonic() > deadline:
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.5)  # poll interval while the stack starts
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
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()


if __name__ == "__main__":
    raise SystemExit(main())
