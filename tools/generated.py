"""The command line of a generated file (k8s/base, compose.yaml): rewrite it from its source, or
with --check exit 1 when it differs from a fresh render, so a test or CI can tell it is stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tools.kubetools import ROOT


def write_or_check(path: Path, render: Callable[[], str], doc: str | None, remedy: str) -> None:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    fresh = render()
    if args.check:
        if not path.exists() or path.read_text() != fresh:
            sys.exit(f"{path.relative_to(ROOT)} is stale: run {remedy}")
        return
    path.write_text(fresh)
    print(f"wrote {path.relative_to(ROOT)}")
