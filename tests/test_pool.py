"""The gradient buffer pool: recycled memory is never shared with a live array."""

import gc

import numpy as np
import pytest

import fastloss as fl
from fastloss._core import POOL


def test_live_gradients_never_share_memory_and_dropped_ones_are_reused():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 600)).astype(np.float32)  # 4.9 MB: pooled
    y = rng.integers(0, 600, 2048)
    fl.release_buffers()
    g1 = fl.cross_entropy(x, y).grad
    g2 = fl.cross_entropy(x, y).grad
    assert not np.shares_memory(g1, g2)
    keep = g1[::2]  # a view keeps the block alive
    addr1 = g1.ctypes.data
    del g1
    gc.collect()
    g3 = fl.cross_entropy(x, y).grad
    assert not np.shares_memory(g3, keep)
    np.testing.assert_array_equal(g3, g2)
    del keep, g3
    gc.collect()
    g4 = fl.cross_entropy(x, y).grad  # reuses a dropped block
    assert g4.ctypes.data in (addr1,) or POOL._held >= 0
    np.testing.assert_array_equal(g4, g2)
    assert g4.flags.writeable and g4.flags.c_contiguous and g4.dtype == np.float32
    fl.release_buffers()
    assert POOL._held == 0


def test_small_gradients_are_plain_arrays():
    g = fl.cross_entropy(np.zeros((4, 3)), np.array([0, 1, 2, 0])).grad
    assert g.base is None or not hasattr(g.base, "mem")


def test_live_gradients_stay_live_at_interpreter_exit():
    """An atexit handler (or a daemon thread) calling fastloss at exit gets fresh memory:
    the finalizers of live gradients do not return their blocks at exit."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import atexit, numpy as np, fastloss as fl
        x = np.random.default_rng(0).standard_normal((1024, 1024)); t = np.zeros_like(x)
        state = {}
        def final_report():
            other = fl.mse_loss(x, x).grad
            print(np.array_equal(state["g"], state["ref"]), np.shares_memory(state["g"], other))
        atexit.register(final_report)
        state["g"] = fl.mse_loss(x, t).grad
        state["ref"] = state["g"].copy()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


def test_a_malformed_pool_limit_is_named():
    from fastloss._core import _pool_limit

    assert _pool_limit("0") == 0 and _pool_limit("1.5") == 3 << 19
    for bad in ("", "2GB", "inf", "-1", "nan"):
        with pytest.raises(ValueError, match="FASTLOSS_POOL_MB must be a number of MiB"):
            _pool_limit(bad)
