"""A batch-1 ONNX graph → the same graph in a ``Scan`` over a new dynamic batch axis. Runs INSIDE
the builder venv (it needs the ``onnx`` package), started by ``services.factory.importer``
for ``posefleet models import --wrap-batch``.

It is the catalog build's own wrapper (``convert.batchify``) with every tensor keeping its name,
so a user's exported model batches exactly as the catalog's tfjs models do: one
``session.run`` per batch, items computed one by one inside it, outputs identical to single runs
(the importer checks this on the wrapped file before it is stored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

INNER = "__item_graph"


def _rename_inside(graph, names: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Rename tensors throughout ``graph``: a Scan body may not reuse the outer graph's names
    (ONNX's single-assignment rule spans subgraphs), and the outer names must stay the user's."""
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for tensor in [*graph.input, *graph.output]:
        tensor.name = names.get(tensor.name, tensor.name)


def wrap(source: Path, out: Path) -> None:
    import onnx

    from services.factory.builder.convert import batchify

    model = onnx.load(str(source))
    initialisers = {i.name for i in model.graph.initializer}
    io = [t.name for t in [*model.graph.input, *model.graph.output] if t.name not in initialisers]
    inner = {name: name + INNER for name in io}
    _rename_inside(model.graph, inner)
    onnx.save(batchify(model, {v: k for k, v in inner.items()}), str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--in", dest="source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    wrap(args.source, args.out)


if __name__ == "__main__":
    main()
