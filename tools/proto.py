"""Generate the V2 gRPC stubs (services/gateway/v2/proto/*_pb2*.py*) from the .proto with the
pinned grpcio-tools; the stubs are committed, and a test fails while they are stale.

    python -m tools.proto          # regenerate (`make proto`)
    python -m tools.proto --check  # exit 1 if the committed stubs differ from a fresh run
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("services/gateway/v2/proto/grpc_predict_v2.proto")
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(out: Path) -> dict[str, bytes]:
    """Run protoc into ``out``; returns the generated files by name."""
    args = [
        "protoc",
        f"-I{ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO}")
    return {name: (out / PROTO.parent / name).read_bytes() for name in OUTPUTS}


def stale() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    return [n for n, data in fresh.items() if (ROOT / PROTO.parent / n).read_bytes() != data]


def main() -> int:
    if "--check" in sys.argv[1:]:
        names = stale()
        if names:
            print(f"stale V2 stubs: {names}; run `make proto`", file=sys.stderr)
        return 1 if names else 0
    generate(ROOT)
    print(f"generated {', '.join(OUTPUTS)} from {PROTO}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
