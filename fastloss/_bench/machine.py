"""What the report's footnotes say about the machine and the software."""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_rev() -> str:
    """``git describe``-like commit of the fastloss sources, if they are a git checkout
    (tracked files, not an installed copy that happens to sit inside some repository)."""
    import fastloss

    pkg = pathlib.Path(fastloss.__file__).resolve().parent
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(pkg), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()

        git("ls-files", "--error-unmatch", "__init__.py")
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
        return rev + ("+local changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"


def versions(peers) -> dict:
    import numba
    import numpy as np

    import fastloss

    v = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fastloss": fastloss.__version__,
        "fastloss_git": git_rev(),
        "fastloss_path": str(pathlib.Path(fastloss.__file__).parent),
    }
    for name in ("torch", "jax", "matplotlib"):
        if name in peers.status:
            v[name] = peers.label(name)
    if peers.jax is not None:
        try:
            import jaxlib

            v["jaxlib"] = jaxlib.__version__
        except ImportError:  # pragma: no cover - jax needs jaxlib
            pass
    return v


def loadavg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
