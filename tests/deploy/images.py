"""The container images of the tests, built on this machine without an image registry.

No registry is reachable, so the official ``python:3.11-slim`` that deploy/docker/Dockerfile
starts from by default cannot be pulled. Instead:

- **base**: a minimal Debian of this machine's release (debootstrap, ``--variant=minbase``)
  with Debian's python3 (3.11 on bookworm, the lock's Python), from the Debian mirror this
  machine's apt is configured with (read from /etc/apt/sources.list* when built; the
  repository names none), imported as an image;
- **wheelhouse**: every file of requirements.lock (``pip download --require-hashes``: the very
  wheels and sdists whose hashes the lock pins) and setuptools and wheel (what pip builds the
  lock's sdists with), fetched with this machine's pip configuration;
- **builder**: the base with the wheelhouse and an /etc/pip.conf saying ``no-index`` and
  ``find-links = /wheelhouse``: the Dockerfile's BUILDER_IMAGE, so its unchanged
  ``pip install --require-hashes`` installs from the wheelhouse;
- **app**: deploy/docker/Dockerfile built with BASE_IMAGE=base, BUILDER_IMAGE=builder.

Base, wheelhouse and builder are cached, tagged (or named) by a hash of their inputs (the
release and package list; the lock), under ``$TRADELOOP_TEST_CACHE`` (default
~/.cache/tradeloop) and in the Docker daemon, so a second run builds none of them; a new
lock replaces the old wheelhouse and builder. The app image is built every run, from the
Docker layer cache when the lock and the code are unchanged.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_RECIPE = "minbase; docs, man pages, locales and apt lists removed; v1"  # bump to rebuild the base
# besides the lock: setuptools and wheel, what pip builds the lock's sdists (peewee) with
BUILD_BACKENDS = ("setuptools>=69", "wheel")
APP_TAG = "tradeloop-test-app:latest"
VENV_TAG = "tradeloop-test-venv:latest"  # the Dockerfile's venv stage
TIMINGS: dict[str, float] = {}  # what this process built and how long it took, seconds


def cache_dir() -> Path:
    root = os.environ.get("TRADELOOP_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tradeloop"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def docker(*args: str, timeout: float = 600, input: bytes | None = None) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)
    if out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:4])} ... failed ({out.returncode}):\n{out.stderr.decode()[-4000:]}")
    return out.stdout.decode()


def image_exists(tag: str) -> bool:
    return image_id(tag) is not None


def short_hash(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


@contextmanager
def cache_lock() -> Iterator[None]:
    """One builder at a time (pytest-xdist workers, two test runs)."""
    with open(cache_dir() / "images.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------- base: debootstrap
def release() -> str:
    """This machine's Debian release codename (bookworm)."""
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?(\w+)\"?$", text, re.M)
    if not found:
        raise RuntimeError("/etc/os-release names no VERSION_CODENAME: the container tests need a Debian machine")
    return found.group(1)


def debian_mirror(codename: str, *, apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI of the first apt source serving ``codename``'s main suite (deb822 .sources files
    and one-line .list files), as this machine's apt is configured."""
    files = sorted(apt_dir.glob("sources.list.d/*.sources")) + [apt_dir / "sources.list"]
    files += sorted(apt_dir.glob("sources.list.d/*.list"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, v in (line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#")
                )
                if "deb" in fields.get("types", "").split() and codename in fields.get("suites", "").split():
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()  # options: deb [signed-by=...] URI suite ...
                if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                    return words[1]
    raise RuntimeError(f"no apt source of /etc/apt serves {codename}: configure a Debian mirror for apt")


def base_image() -> str:
    codename = release()
    tag = f"tradeloop-test-base:{codename}-{short_hash(codename, *BASE_PACKAGES, BASE_RECIPE)}"
    if image_exists(tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise RuntimeError("debootstrap is missing: run tests/services/ensure.sh (it installs Debian's debootstrap)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        out = subprocess.run(
            ["nice", "-n", "19", debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             codename, str(rootfs), debian_mirror(codename)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/locale", "usr/share/info"):  # fmt: skip
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, timeout=600, check=True)
        docker(
            "import",
            "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change", "ENV LANG=C.UTF-8",
            "--change", 'CMD ["python3"]',
            "-", tag,
            input=tar.stdout,
        )  # fmt: skip
    _timed("base image (debootstrap + import)", started)
    return tag


# ---------------------------------------------------------------------- wheelhouse and builder
def wheelhouse() -> Path:
    lock = LOCK.read_bytes()
    target = cache_dir() / f"wheelhouse-{short_hash(lock, *BUILD_BACKENDS)}"
    if (target / ".complete").exists():
        return target
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".wheelhouse-"))
    try:
        pip = ["nice", "-n", "19", sys.executable, "-m", "pip", "download", "--quiet",
               "--disable-pip-version-check", "--dest", str(work)]  # fmt: skip
        for args in (["--require-hashes", "-r", str(LOCK)], list(BUILD_BACKENDS)):
            out = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                raise RuntimeError(f"pip download {' '.join(args)} failed:\n{out.stderr[-4000:]}")
        (work / ".complete").touch()
        for old in cache_dir().glob("wheelhouse-*"):  # an older lock's
            shutil.rmtree(old, ignore_errors=True)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _timed("wheelhouse (pip download)", started)
    return target


BUILDER_DOCKERFILE = """FROM {base}
COPY wheelhouse /wheelhouse
RUN printf '[global]\\nno-index = true\\nfind-links = /wheelhouse\\n' > /etc/pip.conf
"""


def builder_image(base: str, wheels: Path) -> str:
    tag = f"tradeloop-test-builder:{short_hash(base, wheels.name)}"
    if image_exists(tag):
        return tag
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".builder-") as tmp:
        context = Path(tmp)
        shutil.copytree(wheels, context / "wheelhouse", copy_function=os.link)  # hard links: no copy
        (context / "Dockerfile").write_text(BUILDER_DOCKERFILE.format(base=base))
        docker("build", "--quiet", "--force-rm", "-t", tag, str(context), timeout=1200)
    for line in docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "tradeloop-test-builder").split():
        if line != tag:  # an older lock's
            subprocess.run(["docker", "image", "rm", line], capture_output=True, timeout=120)
    _timed("builder image (base + wheelhouse)", started)
    return tag


def app_image() -> str:
    """deploy/docker/Dockerfile built on the local base and builder (from the layer cache when
    nothing changed): the tag. The venv stage is tagged too, so it stays cached; the images
    a build replaces are removed (each holds a 2 GB venv)."""
    with cache_lock():
        base = base_image()
        builder = builder_image(base, wheelhouse())
        started = time.monotonic()
        args = ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILDER_IMAGE={builder}"]
        for target, tag in (("venv", VENV_TAG), (None, APP_TAG)):
            before = image_id(tag)
            docker(
                "build", "--quiet", "--force-rm", "-f", str(DOCKERFILE), *args,
                *(["--target", target] if target else []), "-t", tag, str(ROOT),
                timeout=1800,
            )  # fmt: skip
            if before and before != image_id(tag):
                subprocess.run(["docker", "image", "rm", before], capture_output=True, timeout=300)
        _timed("app image (docker build)", started)
    return APP_TAG


def image_id(tag: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, timeout=60)
    return out.stdout.decode().strip() if out.returncode == 0 else None


def image_size_mb(tag: str) -> float:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).strip()) / 1e6
