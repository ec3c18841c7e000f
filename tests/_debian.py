"""Debian packages a test needs (chromium, promtool, espeak-ng, sox): installed here, once, where
they are missing and apt-get can run as root; otherwise the test FAILS naming the packages.  Like
PostgreSQL, a real tool is never skipped."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_tried: set[tuple[str, ...]] = set()


def ensure_packages(packages: tuple[str, ...], missing, what: str, *, recommends: bool = True) -> None:
    """`missing()` lists what is still absent; install `packages` once if anything is."""
    absent = missing()
    if absent and packages not in _tried and shutil.which("apt-get") and os.geteuid() == 0:
        _tried.add(packages)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *([] if recommends else ["--no-install-recommends"]),
                        *packages], env=env, check=False, capture_output=True)
        absent = missing()
    if absent:
        pytest.fail(f"{what} need the Debian packages {', '.join(absent)} "
                    f"(apt-get install {' '.join(packages)}); they never skip", pytrace=False)


def ensure_tools(tools: dict[str, str], what: str, **kw) -> None:
    """tools: executable -> Debian package."""
    ensure_packages(tuple(dict.fromkeys(tools.values())),
                    lambda: [pkg for exe, pkg in tools.items() if shutil.which(exe) is None], what, **kw)
