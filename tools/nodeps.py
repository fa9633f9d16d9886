"""Install the packages pyproject.toml lists under [tool.posefleet.kserve-client] with pip's
--no-deps (`make install` runs this after the test extra): KServe's clients without its model
server's dependency list, which conflicts with the rest of the test tools (see pyproject.toml).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["posefleet"]["kserve-client"]["no-deps"]


def main() -> int:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *packages()]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
