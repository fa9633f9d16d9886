"""The AWS Neuron backend without a NeuronCore: artefact discovery and verification, the fixed
batch size, dtype conversion, output mapping, per-instance NeuronCore placement and the
messages when the SDK or the artefact is missing.

STAND-INS: neither torch-neuronx nor tensorflow-neuron installs outside AWS's package index, and
this machine has no Inferentia. The fixtures below put minimal stand-ins of the SDK modules
(``torch``, ``torch_neuronx``, ``tensorflow``, ``tensorflow.neuron``) into ``sys.modules``; they
mimic only the calls the backend makes and record them, so the tests check what the backend
asks of the SDK, not what the SDK does.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from services.core.handler import HandlerContext
from services.core.runtime.loading import load_model
from services.core.runtime.neuron import (
    ARTEFACT_FILE,
    BackendUnavailable,
    NeuronArtefactError,
    NeuronOptions,
    artefact_dir,
    core_range,
    map_outputs,
    open_neuron_model,
    payload_hashes,
    read_artefact,
)
from services.core.runtime.repository import ModelEntry
from services.core.settings import Settings
from services.factory.compile import artefact_manifest
from services.pins import sha256_file

ITEM = (3, 2)  # input item shape of the fake model


def make_entry(root: Path) -> ModelEntry:
    folder = root / "toy" / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"not read by the neuron backend")
    spec = {
        "name": "toy",
        "version": "1",
        "sha256": "a" * 64,
        "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", *ITEM]}],
        "outputs": [
            {"name": "total", "dtype": "float32", "shape": ["batch"]},
            {"name": "doubled", "dtype": "float32", "shape": ["batch", *ITEM]},
        ],
    }
    return ModelEntry("toy", "1", folder / "model.onnx", spec)


def write_artefact(
    entry: ModelEntry, target: str = "inf2", batch: int = 4, **overrides: Any
) -> Path:
    """An artefact folder as `posefleet models compile` writes it (its own manifest function)."""
    folder = artefact_dir(entry, target)  # type: ignore[arg-type]
    if target == "inf2":
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"stand-in torchscript")
    else:
        (folder / "saved_model" / "variables").mkdir(parents=True)
        (folder / "saved_model" / "saved_model.pb").write_bytes(b"stand-in graph")
        (folder / "saved_model" / "variables" / "variables.index").write_bytes(b"idx")
    outputs = [
        {"name": "total", "dtype": "float32", "shape": [batch], "key": "output_0"},
        {"name": "doubled", "dtype": "float32", "shape": [batch, *ITEM], "key": "output_1"},
    ]
    manifest = artefact_manifest(
        entry,
        target,  # type: ignore[arg-type]
        batch,
        [{"name": "images", "dtype": "float32", "shape": [batch, *ITEM]}],
        outputs,
        payload_hashes(folder),
        {"torch_neuronx": "2.1.0"},
        {},
    )
    manifest.update(overrides)
    (folder / ARTEFACT_FILE).write_text(yaml.safe_dump(manifest))
    return folder


class Tensor:
    """Stand-in for torch.Tensor: a numpy array with ``.numpy()``."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def numpy(self) -> np.ndarray:
        return self.array


class SDK:
    """What the stand-in SDK saw: placements at load time, batch shapes and dtypes per call."""

    def __init__(self) -> None:
        self.context: tuple[int, int] | None = None
        self.placements: list[tuple[int, int] | None] = []
        self.calls: list[tuple[tuple[int, ...], np.dtype]] = []

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((x.shape, x.dtype))
        return x.sum(axis=(1, 2)).astype(np.float32), (x * 2).astype(np.float32)


@pytest.fixture
def torch_sdk(monkeypatch) -> SDK:
    """Stand-ins for ``torch`` and ``torch_neuronx`` (torch-neuronx, Inf2)."""
    sdk = SDK()
    torch = types.ModuleType("torch")
    torch.from_numpy = Tensor  # type: ignore[attr-defined]
    torch.inference_mode = contextlib.nullcontext  # type: ignore[attr-defined]

    def load(path: str) -> Any:
        assert Path(path).read_bytes() == b"stand-in torchscript"
        sdk.placements.append(sdk.context)

        def module(x: Tensor) -> tuple[Tensor, Tensor]:
            return tuple(Tensor(a) for a in sdk.forward(x.array))  # type: ignore[return-value]

        return module

    torch.jit = types.SimpleNamespace(load=load)  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def neuron_cores_context(start_nc: int, nc_count: int) -> Iterator[None]:
        sdk.context = (start_nc, nc_count)
        yield
        sdk.context = None

    neuronx = types.ModuleType("torch_neuronx")
    neuronx.__version__ = "2.1.0"  # type: ignore[attr-defined]
    neuronx.experimental = types.SimpleNamespace(  # type: ignore[attr-defined]
        neuron_cores_context=neuron_cores_context
    )
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch_neuronx", neuronx)
    return sdk


@pytest.fixture
def tf_sdk(monkeypatch) -> SDK:
    """Stand-ins for ``tensorflow`` and ``tensorflow.neuron`` (tensorflow-neuron, Inf1)."""
    sdk = SDK()
    tf = types.ModuleType("tensorflow")
    tf.constant = np.asarray  # type: ignore[attr-defined]

    def load(path: str) -> Any:
        assert (Path(path) / "saved_model.pb").exists()

        def serving_default(**kwargs: np.ndarray) -> dict[str, np.ndarray]:
            total, doubled = sdk.forward(kwargs["images"])
            return {"output_1": doubled, "output_0": total}

        return types.SimpleNamespace(signatures={"serving_default": serving_default})

    tf.saved_model = types.SimpleNamespace(load=load)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", types.ModuleType("tensorflow.neuron"))
    return sdk


def feeds(n: int, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    return {"images": np.arange(n * 6).reshape(n, *ITEM).astype(dtype)}


@pytest.mark.parametrize("items", [1, 3, 4, 6, 9])
def test_any_batch_runs_as_compiled_size_chunks_and_is_trimmed_back(tmp_path, torch_sdk, items):
    entry = make_entry(tmp_path)
    write_artefact(entry, batch=4)
    model = open_neuron_model(entry, NeuronOptions())
    x = feeds(items)["images"]
    out = model.run({"images": x})
    np.testing.assert_array_equal(out["total"], x.sum(axis=(1, 2)))
    np.testing.assert_array_equal(out["doubled"], x * 2)
    assert {shape for shape, _ in torch_sdk.calls} == {(4, *ITEM)}
    assert len(torch_sdk.calls) == -(-items // 4)


def test_inputs_are_cast_to_the_compiled_dtype(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    write_artefact(entry, batch=2)
    out = open_neuron_model(entry, NeuronOptions()).run(feeds(2, np.uint8))
    assert torch_sdk.calls == [((2, *ITEM), np.dtype(np.float32))]
    assert out["doubled"].dtype == np.float32


def test_wrong_item_shape_names_the_compiled_shape(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    write_artefact(entry)
    model = open_neuron_model(entry, NeuronOptions())
    with pytest.raises(ValueError, match=r"compiled for \[3, 2\] \(shapes are fixed\)"):
        model.run({"images": np.zeros((1, 2, 3), np.float32)})


def test_empty_batch_gives_empty_outputs(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    write_artefact(entry)
    out = open_neuron_model(entry, NeuronOptions()).run(feeds(0))
    assert out["doubled"].shape == (0, *ITEM) and torch_sdk.calls == []


def test_instances_are_placed_on_their_own_neuroncores(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    write_artefact(entry)
    options = NeuronOptions(cores_per_instance=2, first_core=1)
    models = [open_neuron_model(entry, options, instance=i) for i in range(3)]
    assert torch_sdk.placements == [(1, 2), (3, 2), (5, 2)]
    assert all(m.backend == "neuron-inf2" and m.input_names == ["images"] for m in models)


def test_core_range_refuses_impossible_placements():
    assert core_range(NeuronOptions(), 3) == (3, 1)
    with pytest.raises(ValueError):
        core_range(NeuronOptions(cores_per_instance=0), 0)


def test_a_failed_placement_says_how_many_cores_a_pod_needs(tmp_path, torch_sdk, monkeypatch):
    entry = make_entry(tmp_path)
    write_artefact(entry)

    def refuse(start_nc: int, nc_count: int) -> None:
        raise ValueError("Invalid NeuronCore count nc_count=2. NeuronCores available: 1")

    monkeypatch.setattr(sys.modules["torch_neuronx"].experimental, "neuron_cores_context", refuse)
    with pytest.raises(BackendUnavailable, match=r"aws\.amazon\.com/neuroncore") as info:
        open_neuron_model(entry, NeuronOptions(cores_per_instance=2), instance=1)
    assert "NeuronCores 2..3 (instance 1" in str(info.value)


def test_missing_artefact_names_the_compile_command(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    with pytest.raises(NeuronArtefactError) as info:
        open_neuron_model(entry, NeuronOptions())
    assert "posefleet models compile toy --version 1 --target neuron" in str(info.value)
    assert "neuron-inf2/artefact.yaml is missing" in str(info.value)


def test_artefact_of_an_older_model_onnx_is_stale(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    write_artefact(entry, source={"file": "model.onnx", "sha256": "b" * 64})
    with pytest.raises(NeuronArtefactError, match="is stale: it was compiled from") as info:
        open_neuron_model(entry, NeuronOptions())
    assert "posefleet models compile toy" in str(info.value)


def test_corrupted_payload_is_refused(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    folder = write_artefact(entry)
    (folder / "model.pt").write_bytes(b"truncated")
    with pytest.raises(NeuronArtefactError, match=r"files differ from artefact.yaml \(model.pt"):
        open_neuron_model(entry, NeuronOptions())


def test_artefact_for_other_inputs_is_refused(tmp_path, torch_sdk):
    entry = make_entry(tmp_path)
    write_artefact(entry, inputs=[{"name": "pixels", "dtype": "float32", "shape": [4, *ITEM]}])
    with pytest.raises(NeuronArtefactError, match=r"inputs \['pixels'\] do not match"):
        open_neuron_model(entry, NeuronOptions())


def test_sdk_version_mismatch_is_logged(tmp_path, torch_sdk, caplog):
    entry = make_entry(tmp_path)
    write_artefact(entry, sdk={"torch_neuronx": "2.0.0"})
    with caplog.at_level(logging.WARNING, logger="posefleet.runtime"):
        open_neuron_model(entry, NeuronOptions())
    (record,) = [r for r in caplog.records if "other SDK versions" in r.message]
    assert record.compiled_vs_installed == {"torch_neuronx": ("2.0.0", "2.1.0")}


@pytest.mark.parametrize(
    ("target", "package", "instance"),
    [("inf2", "torch-neuronx", "inf2 or trn1"), ("inf1", "tensorflow-neuron", "inf1 instance")],
)
def test_missing_sdk_says_which_package_image_and_instance(
    tmp_path, monkeypatch, target, package, instance
):
    for module in ("torch", "torch_neuronx", "tensorflow", "tensorflow.neuron"):
        monkeypatch.setitem(sys.modules, module, None)  # None makes `import` fail
    entry = make_entry(tmp_path)
    write_artefact(entry, target=target)
    with pytest.raises(BackendUnavailable) as info:
        open_neuron_model(entry, NeuronOptions(target=target))
    message = str(info.value)
    assert package in message and instance in message
    assert "`neuron` image" in message and "POSEFLEET_BACKEND=onnxruntime" in message


def test_inf1_is_served_as_legacy_through_its_signature(tmp_path, tf_sdk, caplog):
    entry = make_entry(tmp_path)
    write_artefact(entry, target="inf1", batch=2)
    with caplog.at_level(logging.WARNING, logger="posefleet.runtime"):
        model = open_neuron_model(entry, NeuronOptions(target="inf1"))
    assert model.backend == "neuron-inf1-legacy"
    assert any("end of life" in r.message for r in caplog.records)
    x = feeds(3)["images"]
    out = model.run({"images": x})  # dict outputs mapped by artefact.yaml's keys
    np.testing.assert_array_equal(out["total"], x.sum(axis=(1, 2)))
    assert [shape for shape, _ in tf_sdk.calls] == [(2, *ITEM), (2, *ITEM)]


def test_output_mapping_by_position_key_and_single_tensor(tmp_path):
    entry = make_entry(tmp_path)
    write_artefact(entry)
    outputs = read_artefact(entry, "inf2").outputs
    a, b = np.zeros(1), np.ones(1)
    assert map_outputs([Tensor(a), Tensor(b)], outputs)["doubled"] is b
    assert map_outputs({"output_0": a, "output_1": b}, outputs)["total"] is a
    with pytest.raises(NeuronArtefactError, match="returned 1 outputs"):
        map_outputs(Tensor(a), outputs)
    with pytest.raises(NeuronArtefactError, match=r"not \['output_1'\]"):
        map_outputs({"output_0": a}, outputs)
    assert map_outputs(Tensor(a), outputs[:1]) == {"total": a}


def test_settings_choose_the_neuron_backend_and_each_copy_its_cores(tmp_path, torch_sdk):
    """POSEFLEET_BACKEND=neuron through the same loader every handler uses (stand-in SDK)."""
    entry = make_entry(tmp_path)
    entry.path.write_bytes(b"the fp32 model the artefact was compiled from")
    spec = dict(entry.spec, sha256=sha256_file(entry.path))
    (entry.path.parent / "model.yaml").write_text(yaml.safe_dump(spec))
    entry = ModelEntry(entry.name, entry.version, entry.path, spec)
    write_artefact(entry)
    settings = Settings(
        model_root=tmp_path, backend="neuron", neuron_cores_per_instance=2, neuron_first_core=1
    )
    loaded = [
        load_model(HandlerContext("s", settings, model="toy", instance=i), "toy")[0]
        for i in range(2)
    ]
    assert [m.backend for m in loaded] == ["neuron-inf2", "neuron-inf2"]
    assert torch_sdk.placements == [(1, 2), (3, 2)]
    assert torch_sdk.calls[0] == ((4, *ITEM), np.dtype(np.float32))  # the warm-up, padded to 4
    without_sdk = Settings(model_root=tmp_path, backend="neuron", neuron_target="inf1")
    with pytest.raises(BackendUnavailable, match="neuron"):
        load_model(HandlerContext("s", without_sdk, model="toy"), "toy")
