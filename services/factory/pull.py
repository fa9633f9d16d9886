"""``posefleet models pull s3://bucket/prefix --to DIR``: a model repository from an
S3-compatible bucket (AWS S3, MinIO, Ceph RGW …) onto local disk — what the chart's init
container runs so that workers serve models without an image rebuild (docs/own-models.md).

boto3 does the transfer (credentials from the usual AWS variables, which the chart fills from a
Secret; ``--endpoint-url`` or ``AWS_ENDPOINT_URL`` for a non-AWS server). Every file lands under
a temporary name and is renamed into place, and the pull ends by loading every version of every
model through ModelRepository — the same sha256 check a worker makes at start-up — so a
corrupted or half-copied repository fails the init container, with the file named, instead of
a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from services.core.runtime.repository import ModelNotFound, ModelRepository
from services.factory.build import ModelBuildError

Say = Callable[[str], None]


class PullError(ModelBuildError):
    pass


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, ``some/prefix/``)."""
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise PullError(f"{url!r} is not an s3://bucket[/prefix] URL")
    return bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""


def local_path(dest: Path, key: str, prefix: str) -> Path | None:
    """Where an object goes; None for folder markers. Keys that would leave ``dest`` are
    refused: a bucket is not trusted to name our files."""
    relative = key[len(prefix) :]
    if not relative or relative.endswith("/"):
        return None
    parts = PurePosixPath(relative).parts
    if any(part in ("..", ".") for part in parts) or relative.startswith("/"):
        raise PullError(f"object key {key!r} would be written outside {dest}")
    return dest.joinpath(*parts)


def verify(dest: Path) -> list[str]:
    """Every model version in ``dest`` loads as a worker would load it (sha256 included)."""
    repository = ModelRepository(dest)
    checked, broken = [], []
    for folder in sorted(p for p in dest.iterdir() if p.is_dir()):
        for version in repository.versions(folder.name):
            try:
                repository.get(folder.name, version)
                checked.append(f"{folder.name}:{version}")
            except ModelNotFound as exc:
                broken.append(str(exc))
    if broken:
        raise PullError("the pulled repository is not servable:\n" + "\n".join(broken))
    if not checked:
        raise PullError(f"no <model>/<version>/model.yaml in what was pulled into {dest}")
    return checked


def pull_repository(
    url: str,
    dest: Path,
    endpoint_url: str | None = None,
    region: str | None = None,
    concurrency: int = 4,
    say: Say | None = None,
) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    tell = say or (lambda line: None)
    bucket, prefix = parse_url(url)
    client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
    transfer = TransferConfig(max_concurrency=concurrency)
    try:
        objects = [
            (obj["Key"], obj["Size"])
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for obj in page.get("Contents", [])
        ]
        if not objects:
            raise PullError(f"nothing under {url}")
        wanted = [(key, size, local_path(dest, key, prefix)) for key, size in objects]
        files = [(key, size, path) for key, size, path in wanted if path is not None]
        total = sum(size for _, size, _ in files)
        done = 0
        for i, (key, size, path) in enumerate(files, 1):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".part")
            client.download_file(bucket, key, str(partial), Config=transfer)
            partial.rename(path)
            done += size
            tell(
                f"[{i}/{len(files)}] {path.relative_to(dest)} {size / 1e6:.1f} MB "
                f"({done / max(total, 1):.0%})"
            )
    except (BotoCoreError, ClientError) as exc:
        raise PullError(f"cannot pull {url}: {exc}") from None
    checked = verify(dest)
    tell(f"verified {len(checked)} model version(s): {', '.join(checked)}")
    return {"url": url, "to": str(dest), "files": len(files), "bytes": total, "models": checked}
