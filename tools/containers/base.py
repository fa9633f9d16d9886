"""A Python base image made without any registry: Debian bookworm from the Debian mirror with
mmdebstrap, imported into the engine. It stands in for `python:3.11-slim-bookworm` (the
Dockerfiles' default `PYTHON_IMAGE`): bookworm's Python 3.11 in a venv at /opt/venv, first on
PATH, so `python` and `pip` mean what they mean in the official image.

The root filesystem is cached as a tarball under ~/.cache/posefleet/images, keyed by everything
that shapes it, and re-imported when the engine has lost the image (a fresh data root, a
`docker image prune`); a cold build takes about a minute.

    python -m tools.containers.base        # prints the image's tag, making it first if needed
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tools.containers.dockercli import docker, image_exists, posefleet_cache

SUITE = "bookworm"
# With security and point-release updates, as Docker's own Debian images.
SOURCES = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
# Certificate authorities the host added (a TLS-inspecting proxy's, say) are trusted inside
# too, so that pip in a build reaches PyPI the way the host does; none are added where the host
# has none.
HOST_CAS = Path("/usr/local/share/ca-certificates")
INCLUDE = ("python3", "python3-venv", "ca-certificates", "netbase")
# As Docker's own Debian images do: no manuals, no translations, no docs but the licences.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
)
HOOKS = (
    # daemons installed in derived images must not try to start at build time
    "printf '#!/bin/sh\\nexit 101\\n' > \"$1/usr/sbin/policy-rc.d\"",
    'chmod 755 "$1/usr/sbin/policy-rc.d"',
    'chroot "$1" python3 -m venv /opt/venv',
)
CHANGES = (
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


def host_cas() -> list[Path]:
    return sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []


def hooks() -> list[str]:
    added = [f"copy-in {ca} {HOST_CAS}/" for ca in host_cas()]
    if added:
        added.append('chroot "$1" update-ca-certificates')
    return [*added, *HOOKS]


def recipe_key() -> str:
    """Changes whenever an input of the root filesystem or the import changes."""
    recipe = {"sources": SOURCES, "include": INCLUDE, "dpkg": DPKG_OPTIONS, "variant": "minbase"}
    recipe |= {"hooks": hooks(), "changes": CHANGES}
    recipe["cas"] = [hashlib.sha256(ca.read_bytes()).hexdigest() for ca in host_cas()]
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def tag() -> str:
    return f"posefleet/base:{SUITE}-{recipe_key()}"


def rootfs_tarball() -> Path:
    """The cached root filesystem, made with mmdebstrap when missing."""
    tarball = posefleet_cache() / "images" / f"base-{SUITE}-{recipe_key()}.tar"
    if tarball.exists():
        return tarball
    if not shutil.which("mmdebstrap"):
        raise SystemExit("mmdebstrap is missing: apt-get install mmdebstrap (make engine does)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    cmd = ["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(INCLUDE)}"]
    cmd += [f"--dpkgopt={option}" for option in DPKG_OPTIONS]
    cmd += [f"--customize-hook={hook}" for hook in hooks()]
    cmd += [SUITE, str(partial), *SOURCES]
    # stdin closed: given no mirror on the command line mmdebstrap would read sources from it
    subprocess.run(cmd, stdin=subprocess.DEVNULL, check=True)
    os.replace(partial, tarball)  # whole or absent
    return tarball


def ensure_base() -> str:
    """The base image's tag, imported from the cached root filesystem if the engine lacks it."""
    name = tag()
    if not image_exists(name):
        changes = [arg for change in CHANGES for arg in ("--change", change)]
        docker("import", *changes, str(rootfs_tarball()), name)
    return name


if __name__ == "__main__":
    print(ensure_base(), file=sys.stdout)
