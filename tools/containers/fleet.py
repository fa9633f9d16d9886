"""Run the chart's pods as containers on this machine (the harness, tools/containers/kubelet.py)
and report how long each took from `docker run` to ready: the chart without a cluster.

    python -m tools.containers.engine run -- python -m tools.containers.fleet   # until Ctrl-C
    python -m tools.containers.engine run -- python -m tools.containers.fleet --test --down
    python -m tools.containers.fleet -f my-values.yaml   # more values, as helm -f
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import yaml

from tools.containers.chart import NAMESPACE, render
from tools.containers.kubelet import Fleet

GATEWAY = "posefleet-gateway"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-f", "--values", type=Path, action="append", default=[])
    parser.add_argument("--test", action="store_true", help="run the chart's `helm test` pods")
    parser.add_argument("--down", action="store_true", help="stop once up (and tested)")
    args = parser.parse_args()
    docs = render(*(yaml.safe_load(path.read_text()) for path in args.values))
    with Fleet(docs, name="posefleet", namespace=NAMESPACE, publish={GATEWAY: [8080]}) as fleet:
        ready = fleet.up()
        print(f"{'pod':<36} {'ready s':>8}")
        for name, seconds in ready.items():
            print(f"{name:<36} {seconds:>8.1f}")
        print(f"API: {fleet.url(GATEWAY, 8080)}")
        if args.test:
            for name, code, logs in fleet.run_tests():
                print(f"helm test {name}: exit {code}\n{logs}")
        if not args.down:
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            print("Ctrl-C stops every pod with its grace period")
            stop.wait()


if __name__ == "__main__":
    main()
