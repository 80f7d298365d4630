"""The on-disk kernel cache under concurrency, read-only installs and FASTLOSS_CACHE=0
(issue 13, item 3).  Every test runs fresh processes against its own cache directory."""

import glob
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastloss as fl
from fastloss import _config

# Compiles (or loads) a few kernels in both dtypes, in an order set by argv[1] so that
# concurrent processes add different signatures of one function at the same moment;
# prints a digest of every result and the number of compiles that missed the cache.
SCRIPT = textwrap.dedent(
    """
    import hashlib, sys, time
    import numpy as np
    start = float(sys.argv[2])
    while time.time() < start:   # all processes start compiling together
        time.sleep(0.005)
    import fastloss as fl
    from fastloss import _config
    import numba

    rng = np.random.default_rng(0)
    order = [np.float32, np.float64] if sys.argv[1] == "0" else [np.float64, np.float32]
    a0 = rng.standard_normal(1 << 16)     # parallel builds
    b0 = rng.standard_normal(1 << 16)
    s0 = rng.standard_normal((32, 10))    # serial build
    t = rng.integers(0, 10, 32)
    digests = {}
    for dt in order:
        a, b, s = a0.astype(dt), b0.astype(dt), s0.astype(dt)
        h = hashlib.sha256()
        for r in (fl.mse_loss(a, b), fl.mse_loss(a[:100], b[:100]), fl.cross_entropy(s, t),
                  fl.huber_loss(a, b)):
            h.update(np.asarray(r.loss).tobytes() + r.grad.tobytes())
        digests[np.dtype(dt).name] = h.hexdigest()
    h = hashlib.sha256("".join(digests[k] for k in sorted(digests)).encode())
    disps = set()
    for name, mod in list(sys.modules.items()):
        if name.startswith("fastloss"):
            for v in vars(mod).values():
                if hasattr(v, "serial") and not isinstance(v, type):  # a kernel's builds
                    disps.update((v.parallel, v.serial))
                elif isinstance(v, numba.core.registry.CPUDispatcher):
                    disps.add(v)
    misses = sum(sum(d.stats.cache_misses.values()) for d in disps)
    hits = sum(sum(d.stats.cache_hits.values()) for d in disps)
    print(h.hexdigest(), misses, hits)
    """
)


def _env(cache_dir, **extra):
    env = dict(os.environ)
    env.pop("FASTLOSS_CACHE", None)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env.update(extra)
    return env


def _run(script, args, env, timeout=600):
    return subprocess.Popen(
        [sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def _result(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    digest, misses, hits = out.split()
    return digest, int(misses), int(hits)


def test_four_processes_compile_into_one_empty_cache(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    start = time.time() + 3.0
    procs = [_run(script, [str(i % 2), str(start)], _env(cache)) for i in range(4)]
    results = [_result(p) for p in procs]
    assert len({r[0] for r in results}) == 1, "processes disagree"
    assert all(r[1] > 0 for r in results), "the cache was not empty"
    # a fifth process loads every kernel from the cache: nothing compiles
    digest, misses, hits = _result(_run(script, ["1", "0"], _env(cache)))
    assert digest == results[0][0]
    assert misses == 0 and hits > 0
    assert not glob.glob(str(cache / "**" / "*.tmp.*"), recursive=True)


def test_cache_lock_serialises_writers(tmp_path):
    """``save`` waits while another holder has the function's lock file."""
    f = _config._LockedIndexDataCacheFile(str(tmp_path), "k", ("stamp",))
    other = _config._LockedIndexDataCacheFile(str(tmp_path), "k", ("stamp",))
    done = threading.Event()

    def save():
        other.save(("sig",), b"payload")
        done.set()

    with f._locked(_config.fcntl.LOCK_EX):
        th = threading.Thread(target=save)
        th.start()
        assert not done.wait(0.5), "save did not wait for the lock"
        assert not os.path.exists(f._index_path)
    th.join(10)
    assert done.is_set()
    assert f.load(("sig",)) == b"payload"


def test_read_only_package_directory_falls_back_to_user_cache(tmp_path):
    """A package whose directories cannot hold ``__pycache__`` caches under the user's
    cache directory (numba's user-wide locator), and a second process loads from it."""
    pkg = tmp_path / "site" / "fastloss"
    shutil.copytree(os.path.dirname(fl.__file__), pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (d / "__pycache__").write_text("not a directory")  # blocks the in-tree cache
    home = tmp_path / "home"
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               PYTHONPATH=str(tmp_path / "site"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("FASTLOSS_CACHE", None)
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.replace("import fastloss as fl",
                                     "import fastloss as fl; assert 'site' in fl.__file__"))
    first = _result(_run(script, ["0", "0"], env))
    assert glob.glob(str(home / ".cache" / "**" / "*.nbi"), recursive=True)
    second = _result(_run(script, ["0", "0"], env))
    assert second[0] == first[0]
    assert second[1] == 0 and second[2] > 0


def test_serial_and_parallel_builds_keep_their_own_cache_entries():
    """numba's cache key ignores the jit options: a parallel and a serial dispatcher of one
    function would share an index and load each other's code.  Every kernel's two builds
    are distinct functions with distinct index files; the parallel one's code calls the
    scheduler and the serial one's does not."""
    fl.mse_loss(np.ones(1 << 16), np.zeros(1 << 16))
    fl.mse_loss(np.ones(10), np.zeros(10))
    import fastloss._kernels.boost as kb
    import fastloss._kernels.pointwise as kp
    import fastloss._kernels.softmax as ks

    kernels = [v for mod in (kb, kp, ks) for v in vars(mod).values()
               if hasattr(v, "serial") and not isinstance(v, type)]
    assert len(kernels) > 20
    for k in kernels:
        p, s = k.parallel._cache._cache_file, k.serial._cache._cache_file
        assert p._index_path != s._index_path, k
    files = {}
    for d in ("parallel", "serial"):
        idx = getattr(kp.mse_loss, d)._cache._cache_file._index_path
        files[d] = [pathlib.Path(f).read_bytes() for f in glob.glob(idx[:-4] + ".*.nbc")]
    assert files["parallel"] and files["serial"]
    assert all(b"do_scheduling" in b for b in files["parallel"])
    assert not any(b"do_scheduling" in b for b in files["serial"])


def test_cache_off(tmp_path):
    cache = tmp_path / "cache"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    on = _result(_run(script, ["0", "0"], _env(tmp_path / "other")))
    off = _result(_run(script, ["0", "0"], _env(cache, FASTLOSS_CACHE="0")))
    assert off[0] == on[0]
    assert off[2] == 0
    assert not glob.glob(str(cache / "**" / "*.nb*"), recursive=True)


def test_warmup_in_processes(tmp_path):
    """``warmup(processes=2)`` compiles in spawned workers; this process only loads."""
    code = textwrap.dedent(
        """
        import sys, numba, fastloss as fl
        spent = fl.warmup(["mse_loss", "l1_loss", "grad_hess:logistic"], dtypes=["float64"],
                          processes=2)
        assert sorted(spent) == ["grad_hess:logistic", "l1_loss", "mse_loss"], spent
        disps = set()
        for name, mod in list(sys.modules.items()):
            if name.startswith("fastloss"):
                for v in vars(mod).values():
                    if hasattr(v, "serial") and not isinstance(v, type):
                        disps.update((v.parallel, v.serial))
                        if getattr(v, "small", None) is not None:  # the one-call build
                            disps.add(v.small)
        misses = sum(sum(d.stats.cache_misses.values()) for d in disps)
        hits = sum(sum(d.stats.cache_hits.values()) for d in disps)
        assert misses == 0 and hits >= 4, (misses, hits)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path / "cache"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


LAZY = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import fastloss as fl
    from fastloss import _config
    from fastloss._kernels import pointwise as kp

    rng = np.random.default_rng(0)
    a = rng.standard_normal(1 << 17)
    b = rng.standard_normal(1 << 17)
    disp = kp.huber_loss.parallel
    compiled = []
    background = _config._background_compile
    def record(d, sig):
        compiled.append(d)
        background(d, sig)
    _config._background_compile = record
    first = fl.huber_loss(a, b)
    if sys.argv[1] == "cold":
        pid = os.fork()                          # waits for the background compile
        if pid == 0:
            r = fl.huber_loss(a, b)
            os._exit(0 if r.grad.tobytes() == first.grad.tobytes() else 3)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "forked child"
        assert compiled == [disp], "the parallel build did not compile in the background"
        assert disp.overloads
        second = fl.huber_loss(a, b)             # the parallel build now
        assert second.grad.tobytes() == first.grad.tobytes()
        assert second.loss.tobytes() == first.loss.tobytes()
    else:                                        # a new process: loaded from the cache
        assert not compiled and sum(disp.stats.cache_hits.values()) == 1, disp.stats
        assert not sum(disp.stats.cache_misses.values())
    print("ok")
    """
)


def test_cold_parallel_call_runs_serial_and_compiles_in_background(tmp_path):
    script = tmp_path / "lazy.py"
    script.write_text(LAZY)
    env = _env(tmp_path / "cache", FASTLOSS_LAZY_PARALLEL="1")
    for mode in ("cold", "warm"):
        proc = subprocess.run([sys.executable, str(script), mode], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (mode, proc.stderr[-3000:])
        assert "ok" in proc.stdout


def test_first_call_defers_numbas_scipy_blas_probe():
    """Numba's first compile or cache load imports ``numba.np.arraymath``, whose import-time
    BLAS probe imports all of ``scipy.linalg`` (0.3-0.4 s).  fastloss defers the probe:
    the first call leaves ``scipy.linalg`` unimported, and Numba code that needs the
    answer later (``np.convolve`` picks BLAS by it) still gets it, as does ``np.dot``."""
    pytest.importorskip("scipy.linalg")
    code = textwrap.dedent("""
        import sys
        import numpy as np, numba
        import fastloss as fl
        fl.cross_entropy(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))
        fl.mse_loss(np.zeros(5), np.ones(5))
        assert "numba.np.arraymath" in sys.modules
        assert "scipy.linalg" not in sys.modules, "the first call imported scipy.linalg"
        import numba.np.arraymath as am
        @numba.njit
        def f(a, b):
            return np.dot(a, b), np.convolve(a, b)
        d, c = f(np.arange(3.0), np.arange(3.0))
        assert d == 5.0 and c.tolist() == [0.0, 0.0, 1.0, 4.0, 4.0]
        assert bool(am._HAVE_BLAS) is True and "scipy.linalg" in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
