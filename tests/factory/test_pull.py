"""`posefleet models pull` against a REAL S3-compatible server: moto's server mode (from PyPI,
pinned in the test extra) as a separate process on 127.0.0.1, spoken to over HTTP by boto3 —
the same path the chart's init container takes to MinIO, Ceph or AWS."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from services.cli.redis_server import free_port
from services.core.runtime.repository import ModelRepository
from services.factory.build import sha256_file
from services.factory.pull import PullError, local_path, parse_url, verify
from tests.clirun import posefleet

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "posefleet-test",
    "AWS_SECRET_ACCESS_KEY": "posefleet-test-secret",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)  # poll interval while the server binds
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def bucket(s3_url, model_root, monkeypatch, request):
    """A bucket holding a copy of two built models under a prefix, as `aws s3 sync` leaves it."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_url)
    name = request.node.name.replace("_", "-")[:50]
    s3.create_bucket(Bucket=name)
    for model in ("centernet", "movenet-lightning"):
        for path in sorted((model_root / model / "1").iterdir()):
            s3.upload_file(str(path), name, f"fleet/models/{model}/1/{path.name}")
    s3.put_object(Bucket=name, Key="fleet/models/", Body=b"")  # a console-made folder marker
    return s3, name


def pull(s3_url: str, bucket: str, to: Path) -> subprocess.CompletedProcess:
    return posefleet(
        "models", "pull", f"s3://{bucket}/fleet/models", "--to", str(to),
        "--endpoint-url", s3_url, env=CREDENTIALS,
    )  # fmt: skip


def test_pull_copies_the_repository_and_verifies_every_model(s3_url, bucket, model_root, tmp_path):
    _, name = bucket
    result = pull(s3_url, name, tmp_path / "models")
    assert result.returncode == 0, result.stderr
    assert "verified 2 model version(s): centernet:1, movenet-lightning:1" in result.stderr
    assert "[4/4]" in result.stderr  # one progress line per file
    for model in ("centernet", "movenet-lightning"):
        pulled = ModelRepository(tmp_path / "models").get(model)
        assert sha256_file(pulled.path) == sha256_file(model_root / model / "1" / "model.onnx")
    assert not list((tmp_path / "models").rglob("*.part"))


def test_a_corrupted_object_fails_the_pull_naming_the_file(s3_url, bucket, tmp_path):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="fleet/models/centernet/1/model.onnx", Body=b"not the model")
    result = pull(s3_url, name, tmp_path / "models")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert "not servable" in text and "centernet/1/model.onnx: sha256" in text
    assert "differs from model.yaml's" in text


def test_an_empty_prefix_and_a_missing_bucket_are_clear(s3_url, bucket, tmp_path, monkeypatch):
    _, name = bucket
    result = posefleet(
        "models", "pull", f"s3://{name}/nothing-here", "--to", str(tmp_path / "m"),
        "--endpoint-url", s3_url, env=CREDENTIALS,
    )  # fmt: skip
    assert result.returncode == 1 and "nothing under s3://" in result.stderr
    missing = posefleet(
        "models", "pull", "s3://no-such-bucket/x", "--to", str(tmp_path / "m"),
        "--endpoint-url", s3_url, env=CREDENTIALS,
    )  # fmt: skip
    assert missing.returncode == 1 and "NoSuchBucket" in missing.stderr


def test_keys_cannot_escape_the_destination(tmp_path):
    assert parse_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert parse_url("s3://bucket") == ("bucket", "")
    with pytest.raises(PullError, match="not an s3://"):
        parse_url("https://bucket/a")
    assert local_path(tmp_path, "a/b/", "a/") is None
    assert local_path(tmp_path, "a/m/1/model.yaml", "a/") == tmp_path / "m" / "1" / "model.yaml"
    with pytest.raises(PullError, match="outside"):
        local_path(tmp_path, "a/../../etc/passwd", "a/")


def test_verification_is_the_workers_own(tmp_path, model_root):
    shutil.copytree(model_root / "centernet", tmp_path / "centernet")
    (tmp_path / "centernet" / "1" / "model.onnx").write_bytes(b"corrupt")
    with pytest.raises(PullError, match="centernet"):
        verify(tmp_path)
