import io
import shutil
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from services.core.runtime.repository import ModelNotFound, ModelRepository
from services.core.settings import get_settings
from services.factory.build import ModelBuildError, build_models, cached_model, check_pinned_output
from services.factory.builder_venv import builder_requirements
from services.factory.catalog import CATALOG, HUMAN
from services.pins import PinError, extract_members, fetch_npm, fetch_pinned


def test_builder_pins_come_from_pyproject_and_stay_out_of_the_runtime():
    pins = builder_requirements()
    assert "tensorflow-cpu==2.21.0" in pins and "tf2onnx==1.17.0" in pins
    with pytest.raises(ImportError):
        __import__("tensorflow")


def test_cached_build_is_fast_and_touches_nothing(build_catalog):
    model_root = build_catalog(*CATALOG)
    onnx_file = model_root / "centernet" / "1" / "model.onnx"
    before = onnx_file.stat().st_mtime_ns
    started = time.perf_counter()
    built = build_models(None, model_root, get_settings().cache_dir)
    assert time.perf_counter() - started < 5
    assert all(m.cached for m in built)
    assert {m.name for m in built} == set(CATALOG)
    assert onnx_file.stat().st_mtime_ns == before


def test_modified_model_is_not_a_cache_hit_and_refused_at_load(model_root: Path, tmp_path: Path):
    copy = tmp_path / "repo"
    shutil.copytree(model_root / "movenet-lightning", copy / "movenet-lightning")
    with (copy / "movenet-lightning" / "1" / "model.onnx").open("ab") as f:
        f.write(b"tampered")
    assert cached_model(CATALOG["movenet-lightning"], copy) is None
    with pytest.raises(
        ModelNotFound, match=r"sha256 .* differs .*`posefleet models build movenet-lightning`"
    ):
        ModelRepository(copy).get("movenet-lightning")


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def test_member_with_wrong_sha256_stops_the_build(tmp_path: Path):
    tarball = _tarball(tmp_path / "pkg.tgz", {"package/models/x.bin": b"not the weights"})
    pins = {"package/models/x.bin": "0" * 64}
    with pytest.raises(PinError, match=r"x\.bin: sha256 .* does not match the pinned"):
        extract_members(tarball, pins, tmp_path)


def test_missing_member_is_named(tmp_path: Path):
    tarball = _tarball(tmp_path / "pkg.tgz", {})
    with pytest.raises(PinError, match=r"has no member package/models/x\.bin"):
        extract_members(tarball, {"package/models/x.bin": "0" * 64}, tmp_path)


def _quiet(step: str, fraction: float | None) -> None:
    pass


def _no_fetch() -> None:
    raise AssertionError("a verified cached file must not be fetched again")


def test_tampered_tarball_is_refused_and_a_good_one_is_not_refetched(tmp_path: Path):
    cached = fetch_npm(HUMAN, get_settings().cache_dir, _quiet)  # the registry's, once cached
    copy = tmp_path / HUMAN.tarball_name
    shutil.copy(cached, copy)
    assert fetch_pinned(copy, HUMAN.tarball_sha256, "the package", _no_fetch, _quiet) == copy
    with copy.open("r+b") as f:
        f.seek(1000)
        f.write(b"X")
    # The registry "serving" the tampered file again (a no-op fetch) must stop the build.
    with pytest.raises(PinError, match=rf"{copy.name}: sha256 .* refusing to use it"):
        fetch_pinned(copy, HUMAN.tarball_sha256, "the package", lambda: None, _quiet)


def test_tfjs_conversions_reproduce_their_pinned_bytes(model_root: Path):
    pinned = {n: r.onnx_sha256 for n, r in CATALOG.items() if r.onnx_sha256}
    assert {"centernet", "movenet-lightning"} <= set(pinned)
    repo = ModelRepository(model_root)
    assert {n: repo.get(n).spec["sha256"] for n in pinned} == pinned


def test_a_conversion_that_changed_is_refused():
    recipe = replace(CATALOG["centernet"], onnx_sha256="a" * 64)
    assert check_pinned_output(recipe, "a" * 64) == "a" * 64
    assert check_pinned_output(replace(recipe, onnx_sha256=""), "b" * 64) == "b" * 64
    with pytest.raises(ModelBuildError, match=r"not the pinned a{64}.*update the pin"):
        check_pinned_output(recipe, "b" * 64)


def test_unknown_model_name():
    with pytest.raises(ModelBuildError, match="unknown model"):
        build_models(["nope"], Path("/nonexistent"), Path("/nonexistent"))


def test_repository_picks_the_latest_version_and_names_the_fix(model_root: Path, tmp_path):
    repo = ModelRepository(model_root)
    entry = repo.get("centernet")
    assert entry.version == "1" and entry.spec["inputs"][0]["name"] == "images"
    assert entry.spec["source"]["package"] == "@vladmandic/human"
    with pytest.raises(ModelNotFound, match="run `posefleet models build nope`"):
        repo.get("nope")
    with pytest.raises(ModelNotFound, match="no version 9"):
        repo.get("centernet", "9")
