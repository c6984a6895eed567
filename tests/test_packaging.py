"""What a user installs: the built wheel works outside the checkout, and the engine and the
`retreg register` command load without the app (Qt) or training (Lightning) stacks."""
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from retreg.cli import main
from retreg.core.metrics import mean_corner_error
from retreg.resources import bundled_scale_weights, bundled_weights, sample_pair

CHECKOUT = Path(__file__).resolve().parents[1]
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                      ".pytest_cache", "runs", "checkpoints", "lightning_logs", "out",
                                      "data_synth", "tests", "benchmarks")


def _run(argv: list, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          env=env, **kw)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _runner_site_dirs() -> list[str]:
    """The runner's site-packages folders: the heavy dependencies, without this checkout."""
    proc = _run([sys.executable, "-I", "-c", "import sys; print('\\n'.join(sys.path))"])
    return [p for p in proc.stdout.splitlines() if p.endswith(("site-packages", "dist-packages"))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (the build leaves nothing in the tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(CHECKOUT, src, ignore=_NOT_SOURCES)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist",
          src])
    (path,) = (tmp / "dist").glob("retreg-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with the wheel installed; the dependencies come from
    the runner's site-packages through a .pth (appended after the venv's own packages)."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                .stdout.strip())
    (site / "runner_deps.pth").write_text("\n".join(_runner_site_dirs()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "-q", wheel])
    return env_dir


@pytest.mark.slow
def test_the_wheel_holds_the_weights_and_samples_under_one_import_root(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"retreg/resources/models/retreg_loftr_v1.safetensors",
            "retreg/resources/models/retreg_fusion_v1.safetensors",
            "retreg/resources/models/retreg_fast_v1.safetensors",
            "retreg/resources/models/retreg_superretina_v1.safetensors"} <= set(names)
    assert {"retreg/resources/samples/sample_cf_512.png",
            "retreg/resources/samples/sample_fa.png"} <= set(names)
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"retreg"}  # no top-level core / training / retreg_gui / resources


@pytest.mark.slow
def test_the_installed_wheel_registers_the_bundled_sample_from_outside_the_checkout(
        wheel, installed, tmp_path):
    python = installed / "bin" / "python"
    where = _run([python, "-c", "import retreg, retreg.resources as r; "
                                "print(retreg.__file__); print(*r.sample_pair(), sep='\\n')"],
                 cwd=tmp_path).stdout.splitlines()
    assert all(Path(p).resolve().is_relative_to(installed.resolve()) for p in where), where
    fixed, moving = where[1:]
    out = tmp_path / "out.json"
    _run([installed / "bin" / "retreg", "register", fixed, moving, "--mode", "cffa",
          "--matcher", "loftr", "--json", out], cwd=tmp_path)
    doc = json.loads(out.read_text())
    assert doc["status"] == "ok" and doc["matcher"] == "loftr" and doc["mode"] == "cffa"
    truth = json.loads(Path(fixed).with_name("sample_truth.json").read_text())["cffa"]["matrix"]
    assert mean_corner_error(np.array(doc["transform"]["matrix"]), np.array(truth), 512, 512) < 3.0
    version = _run([installed / "bin" / "retreg", "--version"], cwd=tmp_path).stdout
    assert version.split() == ["retreg", wheel.name.split("-")[1]]


_BLOCK_APP_AND_TRAINING = ("import sys\n"
                           "for name in ('PySide6', 'lightning', 'pytorch_lightning', 'pyqtgraph'):\n"
                           "    sys.modules[name] = None  # importing it now raises ImportError\n")


def test_the_engine_and_the_command_import_without_qt_or_lightning():
    _run([sys.executable, "-c", _BLOCK_APP_AND_TRAINING
          + "import retreg.core.pipeline, retreg.core.matchers.loftr, retreg.cli.register\n"
            "import retreg.cli\n"
            "retreg.cli.build_parser()\n"])


@pytest.mark.slow
def test_register_with_the_learned_matcher_runs_without_qt_or_lightning(tmp_path):
    fixed, moving = sample_pair()
    out = tmp_path / "out.json"
    _run([sys.executable, "-c", _BLOCK_APP_AND_TRAINING
          + "from retreg.cli import main\n"
            f"sys.exit(main(['register', {str(fixed)!r}, {str(moving)!r}, '--mode', 'cffa',\n"
            f"                '--matcher', 'loftr', '--json', {str(out)!r}]))\n"], cwd=tmp_path)
    doc = json.loads(out.read_text())
    assert doc["status"] == "ok" and doc["matcher"] == "loftr"


@pytest.mark.parametrize("argv", [["--help"], ["register", "--help"], ["--version"]])
def test_the_command_answers_help_and_version(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: retreg" if "--help" in argv else "retreg ")


def test_python_dash_m_runs_the_command():
    assert _run([sys.executable, "-m", "retreg.cli", "--help"]).stdout.startswith("usage: retreg")


def test_bundled_files_are_found_through_the_package():
    fixed, moving = sample_pair()
    assert fixed.is_file() and moving.is_file()
    assert bundled_weights().is_file() and bundled_scale_weights().is_file()
