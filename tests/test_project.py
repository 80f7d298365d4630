"""Project-level checks: the README's commands and CI stay in step; the public API."""

import pathlib
import re
import subprocess
import sys

import fastloss

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^(python3 -m venv .*)$", text, flags=re.M)


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    bench_cmd, test_cmd = cmds
    assert "fastloss bench" in bench_cmd
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_all_is_sorted_and_complete():
    assert fastloss.__all__ == sorted(fastloss.__all__)
    for name in fastloss.__all__:
        assert hasattr(fastloss, name), name
    for name in fastloss.LOSSES:
        assert name in fastloss.__all__, name


def test_no_blanket_fastmath_and_no_hardcoded_numba_options_in_kernels():
    for path in (ROOT / "fastloss").rglob("*.py"):
        src = path.read_text()
        assert not re.search(r"fastmath\s*=\s*True", src), path
        if path.name != "_config.py":  # the one module that owns the Numba options
            assert not re.search(r"\b(njit|jit|vectorize|guvectorize)\(", src), path


def test_warmup_runs_every_registered_loss():
    spent = fastloss.warmup(dtypes=["float64"], parallel=False)
    objectives = [f"grad_hess:{n}" for n in fastloss.OBJECTIVES]
    assert sorted(spent) == sorted([*fastloss.LOSSES, *objectives, "linear_cross_entropy"])


def test_import_is_lazy():
    """``import fastloss`` imports NumPy only; numba and a family load on first use."""
    code = (
        "import sys, fastloss as fl\n"
        "assert 'numba' not in sys.modules, 'import fastloss imported numba'\n"
        "assert 'fastloss.softmax' not in sys.modules\n"
        "import numpy as np\n"
        "fl.cross_entropy(np.zeros((2, 3)), np.zeros(2, np.int64))\n"
        "assert 'fastloss.boost' not in sys.modules, 'a softmax loss loaded the objectives'\n"
        "import fastloss.softmax\n"
        "assert callable(fl.softmax) and fl.softmax.__module__ == 'fastloss.softmax'\n"
        "assert sorted(fl.LOSSES) == sorted(set(fl.LOSSES)) and len(fl.LOSSES) >= 20\n"
        "assert set(fl.__all__) <= set(dir(fl))\n"
        "for name in fl.__all__: getattr(fl, name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
