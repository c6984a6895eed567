"""What every training and evaluation run records beside its numbers: config, seed, code
version and package versions, so a number can always be traced back to what produced it."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("retreg", "torch", "kornia", "numpy", "opencv-python-headless", "lightning",
             "safetensors", "scikit-image", "PySide6-Essentials", "pyqtgraph")


def code_version() -> str:
    """Git commit (with ``-dirty`` for uncommitted changes) when running from a work tree of
    this repository, else the installed package's version."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return f"retreg {package_versions().get('retreg', 'unknown')} (installed)"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_record(config: dict, seed: int | None) -> dict:
    """A JSON-serialisable record of how a run was made."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "seed": seed,
        "code_version": code_version(),
        "packages": package_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
    }
