"""What decoding costs, and what the cheaper ways to get the same guarantee or the same pixels cost.

    python -m loadtest.decode [--rounds 7]

Per photo (the bench's 512x512 JPEG, a 640x480 PNG, a 12-Mpx phone-sized JPEG), best of
``rounds`` interleaved rounds:

  decode          what the gateway did to validate an upload: header checks + a full decode
  header          the limits checked from the header alone (Pillow, no pixel decoded)
  header+complete the header plus ``check_complete`` (PNG CRCs, JPEG end marker): the 422 for
                  truncated or corrupt data without decoding

and for the pose stage, which decodes the image again after the detector did: its decode
against passing the detector's person crop instead (the 192x192 RGB crop, base64 in the JSON
output through Redis: bytes moved, encode + decode ms).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from loadtest.photos import photos
from services.core.imaging import ImageLimits, check_complete, check_image, decode_image
from services.core.settings import get_settings

OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data/"
CROP = (192, 192, 3)  # MoveNet Lightning's input


def samples() -> dict[str, bytes]:
    astronaut = photos()[0]
    big = cv2.resize(cv2.imdecode(np.frombuffer(astronaut, np.uint8), 1), (4032, 3024))
    out = {"astronaut 512x512 jpeg": astronaut}
    basketball = cv2.imread(OPENCV_DATA + "basketball1.png")
    if basketball is not None:
        out["basketball1 640x480 png"] = cv2.imencode(".png", basketball)[1].tobytes()
    out["4032x3024 jpeg"] = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return out


def crop_round_trip(crop: np.ndarray) -> bytes:
    """What passing a crop downstream costs: into the JSON output, and back to pixels."""
    text = json.dumps({"crops": [base64.b64encode(crop.tobytes()).decode()]})
    raw = base64.b64decode(json.loads(text)["crops"][0])
    np.frombuffer(raw, np.uint8).reshape(CROP)
    return text.encode()


def best_ms(fn: Callable[[], object], rounds: list[float]) -> None:
    started = time.perf_counter()
    fn()
    rounds.append((time.perf_counter() - started) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10, help="calls per round, median kept")
    args = parser.parse_args()
    limits = ImageLimits.of(get_settings())
    crop = np.zeros(CROP, np.uint8)
    ways: dict[str, Callable[[bytes], object]] = {
        "decode": lambda d: decode_image(d, limits),
        "header": lambda d: check_image(d, limits),
        "header+complete": lambda d: check_complete(d, check_image(d, limits)),
    }
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, data in samples().items():
            for way, fn in ways.items():
                calls: list[float] = []
                for _ in range(args.calls):
                    best_ms(lambda fn=fn, data=data: fn(data), calls)
                results.setdefault((name, way), []).append(sorted(calls)[len(calls) // 2])
        calls = []
        for _ in range(args.calls):
            best_ms(lambda: crop_round_trip(crop), calls)
        results.setdefault(("crop", "pass"), []).append(sorted(calls)[len(calls) // 2])
    table = Table(title=f"decode costs, ms (best of {args.rounds} rounds' medians)")
    for column in ("photo", "bytes", *ways, "decode / header+complete"):
        table.add_column(column, justify="right")
    for name, data in samples().items():
        best = {way: min(results[(name, way)]) for way in ways}
        table.add_row(
            name,
            str(len(data)),
            *[f"{best[w]:.2f}" for w in ways],
            f"{best['decode'] / best['header+complete']:.0f}x",
        )
    Console(width=140).print(table)
    moved = len(crop_round_trip(crop))
    Console().print(
        f"passing one person's crop to the pose stage: {moved} bytes of JSON through Redis, "
        f"{min(results[('crop', 'pass')]):.2f} ms to encode and decode (vs the decode row)"
    )


if __name__ == "__main__":
    main()
