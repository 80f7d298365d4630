"""Process pools after the parent ran parallel kernels (issue 13, item 2).

With numba's ``omp`` layer (what a pip install gets), a child forked after the parent
launched GNU OpenMP's pool is killed by SIGTERM at its first parallel region and a
``multiprocessing.Pool`` then waits for ever.  fastloss serves forked descendants from
the serial build; these tests run the real pools in subprocesses with a timeout.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys
    import numpy as np
    import fastloss as fl

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 100)).astype(np.float32)   # parallel-sized
    t = rng.integers(0, 100, 4096)
    y = rng.standard_normal(1 << 18)

    def work(i):
        r = fl.cross_entropy(x, t)
        m = fl.mse_loss(y, y[::-1].copy())
        g = fl.grad_hess("logistic", y, (y > 0).astype(np.float64))
        return r.loss.tobytes() + r.grad.tobytes() + m.grad.tobytes() + g.grad.tobytes()

    def nested(i):  # a grandchild: os.fork from a forked (daemonic) pool worker
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, work(i))
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 1 << 20):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        return b"".join(chunks)

    if __name__ == "__main__":
        method = sys.argv[1]
        ref = work(0)                        # the parent runs the parallel builds first
        print("layer", fl.threading_layer())
        ctx = mp.get_context(method)
        with ctx.Pool(2) as p:
            out = p.map_async(work, range(4)).get(timeout=100)
            assert all(o == ref for o in out), "a worker's bits differ from the parent's"
            if method == "fork":
                out = p.map_async(nested, range(2)).get(timeout=100)
                assert all(o == ref for o in out), "a grandchild's bits differ"
        print("ok")
    """
)


@pytest.mark.parametrize(
    "method, layer",
    [("fork", "default"), ("fork", "omp"), ("fork", "workqueue"), ("spawn", "default")],
)
def test_pool_after_parallel_kernels(tmp_path, method, layer):
    script = tmp_path / "pool.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    try:
        proc = subprocess.run(
            [sys.executable, str(script), method], env=env, capture_output=True, text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired as e:  # the hang this test exists for
        pytest.fail(f"pool hung: {e.stderr}")
    if proc.returncode and "No threading layer could be loaded" in proc.stderr:
        pytest.skip(f"layer {layer} not available")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Terminating" not in proc.stderr
    assert "ok" in proc.stdout
    if layer != "default":
        assert f"layer {layer}" in proc.stdout


def test_forked_child_flag_only_after_omp_launch(tmp_path):
    """A child forked *before* any parallel region keeps its parallel builds."""
    script = tmp_path / "early.py"
    script.write_text(textwrap.dedent(
        """
        import os, sys
        import fastloss as fl
        from fastloss import _config
        pid = os.fork()
        if pid == 0:
            os._exit(0 if not _config._forked_omp else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    ))
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_fork_while_another_thread_compiles(tmp_path):
    """A fork while a thread is in its first (compiling) call: the child's own first
    compile must not wait for ever on Numba's compiler lock (held across the fork)."""
    code = textwrap.dedent(
        """
        import os, sys, threading, time, numpy as np, fastloss as fl
        x = np.random.default_rng(0).standard_normal((8, 5)); y = np.arange(8) % 5
        th = threading.Thread(target=lambda: fl.cross_entropy(x, y, label_smoothing=0.1))
        th.start()
        time.sleep(0.5)
        pid = os.fork()
        if pid == 0:
            r = fl.mse_loss(x, x * 0)
            os._exit(0 if r.loss == np.mean(x * x) else 3)
        _, st = os.waitpid(pid, 0)
        th.join()
        print("child", st)
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # empty: both calls compile
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=240, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "0"]
