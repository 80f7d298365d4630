"""The one place that owns fastloss's Numba policy.

Every kernel module imports :func:`kernel` / :func:`inline` from here; none of them
hard-codes ``fastmath=``, ``cache=``, ``parallel=`` or a threading layer.

Policy
------
* ``fastmath`` is limited to ``contract`` (FMA) in kernels, plus ``reassoc`` inside the
  summation helpers only (:func:`accumulator`).  The full set's ``nnan``/``ninf`` flags
  would let LLVM delete the NaN, inf and ``-inf``-logit handling the contract promises,
  and ``reassoc`` anywhere else would break the range reductions of the vector math.
  Speed comes from the vectorisable math in ``_vmath``.
* ``error_model="numpy"``: a division by zero gives inf/nan (as NumPy and PyTorch do)
  instead of raising, and removes the zero checks from the inner loops.
* ``nogil=True``: kernels release the GIL, so many Python threads can score at once.
* ``cache=True`` unless ``FASTLOSS_CACHE=0``: the compiled machine code is written to
  Numba's on-disk cache (``__pycache__`` next to the sources, or ``NUMBA_CACHE_DIR``),
  so the JIT compile is paid once per machine and Numba version, not once per process.
* Every kernel exists twice, a ``parallel=True`` and a serial build of the same Python
  function.  Small inputs run the serial build (a parallel launch costs microseconds);
  calls from non-main Python threads run the serial build when the threading layer is
  not thread-safe (``workqueue`` aborts the process on concurrent use).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import types as _pytypes

import numba
from numba.core import caching as _caching
from numba.core import types as _nbtypes
from numba.extending import intrinsic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: numba's own cache behaviour
    fcntl = None

__all__ = [
    "BLOCK",
    "PARALLEL_MIN_ROWS",
    "PARALLEL_MIN_WORK",
    "accumulator",
    "force_parallel",
    "get_num_threads",
    "inline",
    "kernel",
    "pick",
    "rowfn",
    "set_num_threads",
    "threading_layer",
]

_CACHE = os.environ.get("FASTLOSS_CACHE", "1").lower() not in ("0", "false", "no", "off")


# ---------------------------------------------------------------- numba's BLAS probe
# Numba's first compile or cache load imports ``numba.np.arraymath``, which asks at import
# time whether SciPy's BLAS is there (``_HAVE_BLAS = _check_blas()``: ``import
# scipy.linalg.cython_blas``, which imports all of ``scipy.linalg``, 0.3-0.4 s).  The
# answer is only read when a function calling ``np.convolve`` / ``np.correlate`` compiles,
# and fastloss's kernels never do.  So during that first import (in the thread doing it,
# and only then) ``scipy.linalg`` is not found, and ``_HAVE_BLAS`` becomes an object that
# runs Numba's own probe the first time it is read: any other Numba code in the process
# sees the same answer as before, when it needs it.  Skipped if Numba is already set up.
class _BlasProbeBlocker:
    """A meta-path finder that hides ``scipy.linalg`` from one thread."""

    def __init__(self):
        self.thread = threading.get_ident()
        self.blocked = False

    def find_spec(self, name, path=None, target=None):
        if threading.get_ident() == self.thread and (
                name == "scipy.linalg" or name.startswith("scipy.linalg.")):
            self.blocked = True
            raise ModuleNotFoundError(f"{name} deferred by fastloss", name=name)
        return None


class _LazyHaveBlas:
    """``numba.np.arraymath._HAVE_BLAS``, computed by Numba's probe on first use."""

    def __init__(self):
        self.value = None

    def __bool__(self):
        if self.value is None:
            from numba.np.linalg import ensure_blas

            try:
                ensure_blas()
                self.value = True
            except ImportError:
                self.value = False
        return self.value


def _defer_blas_probe():
    try:
        from numba.core import cpu as _cpu

        load = _cpu.CPUContext.load_additional_registries
    except (ImportError, AttributeError):  # pragma: no cover - another Numba layout
        return
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return  # set up already, or the probe is free

    def load_deferring_blas(self):
        _cpu.CPUContext.load_additional_registries = load  # once (under numba's compile lock)
        finder = _BlasProbeBlocker()
        sys.meta_path.insert(0, finder)
        try:
            load(self)
        finally:
            sys.meta_path.remove(finder)
        am = sys.modules.get("numba.np.arraymath")
        if finder.blocked and am is not None and getattr(am, "_HAVE_BLAS", None) is False:
            am._HAVE_BLAS = _LazyHaveBlas()

    _cpu.CPUContext.load_additional_registries = load_deferring_blas


_defer_blas_probe()

# ------------------------------------------------------------------------ cache stamps
# Numba invalidates a cached kernel only when *its own* source file changes, not when a
# helper it inlines from another module (``_vmath``) does.  fastloss's locators stamp
# every cache entry with a hash of the sources compiled code comes from: this module (the
# jit options), ``_vmath`` and ``_kernels``.  The wrapper modules (``softmax.py``, ...)
# and everything else stay out, so editing them keeps the cache.  A module outside these
# that defines a helper inlined into kernels elsewhere must be added to the list.
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_KERNEL_SOURCES = ("_config.py", "_vmath.py", "_kernels")


def _package_hash() -> str:
    h = hashlib.sha256()
    paths = []
    for entry in _KERNEL_SOURCES:
        path = os.path.join(_PKG_DIR, entry)
        if os.path.isdir(path):
            paths += [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".py")]
        else:
            paths.append(path)
    for path in paths:
        with open(path, "rb") as f:
            h.update(os.path.relpath(path, _PKG_DIR).encode() + b"\0" + f.read())
    return h.hexdigest()


_PKG_HASH = _package_hash()


def _stamped(base):
    class Locator(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(_PKG_DIR + os.sep):
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return (super().get_source_stamp(), _PKG_HASH)

    Locator.__name__ = "Fastloss" + base.__name__
    return Locator


_locators = [
    _stamped(getattr(_caching, name))
    for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
    if hasattr(_caching, name)
]
if _CACHE and len(_locators) == 3 and hasattr(_caching, "CacheImpl"):
    _caching.CacheImpl._locator_classes[:0] = _locators


# Several processes that compile into one cache directory at once (containers starting
# together, a process pool's first calls) race in numba's index update: ``save`` reads
# the index, adds its entry and replaces the file, so concurrent writers drop each
# other's entries, and two of them can pick the same data file number -- the index of
# one then names the other's code.  fastloss's kernels take a lock file per function
# (``<index>.lock``, ``flock``): exclusive to save, shared to load.
class _LockedIndexDataCacheFile(_caching.IndexDataCacheFile):
    @contextlib.contextmanager
    def _locked(self, mode):
        try:
            fd = os.open(self._index_path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # a read-only cache directory: nobody writes it
            yield
            return
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the lock

    def save(self, key, data):
        with self._locked(fcntl.LOCK_EX):
            super().save(key, data)

    def load(self, key):
        with self._locked(fcntl.LOCK_SH):
            return super().load(key)


def _lock_cache(disp):
    cache_file = getattr(getattr(disp, "_cache", None), "_cache_file", None)
    if fcntl is not None and type(cache_file) is _caching.IndexDataCacheFile:
        cache_file.__class__ = _LockedIndexDataCacheFile
    return disp

#: Only ``contract`` (fused multiply-add): more accurate, no effect on NaN/inf semantics.
_FASTMATH = {"contract"}

_OPTIONS = dict(nogil=True, cache=_CACHE, fastmath=_FASTMATH, error_model="numpy")

#: Work (elements touched) below which the serial build runs, for elementwise kernels:
#: the parallel launch costs a few microseconds (bench/threshold.py measures it).
PARALLEL_MIN_WORK = int(os.environ.get("FASTLOSS_PARALLEL_MIN_WORK", 32768))

#: Row kernels (softmax family) split rows into blocks of 16; fewer than ~4 blocks gain
#: nothing from a second thread, whatever the row width (bench/threshold.py: parallel
#: wins from 66 rows at 1000 and at 32000 classes, from ~200 rows at 10 classes).
PARALLEL_MIN_ROWS = int(os.environ.get("FASTLOSS_PARALLEL_MIN_ROWS", 64))
PARALLEL_MIN_ROW_WORK = int(os.environ.get("FASTLOSS_PARALLEL_MIN_ROW_WORK", 4096))

#: Number of rows / elements in one reduction block.  Per-block partial sums are
#: combined in block order, so the result does not depend on the thread count.
BLOCK = 256


# --------------------------------------------------------------------------- threading
def _select_threading_layer() -> None:
    """Prefer a thread-safe layer (tbb, then omp); workqueue only as a last resort.

    Must run before the first parallel kernel is compiled.  A user who has set
    ``NUMBA_THREADING_LAYER`` keeps their choice.
    """
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "omp", "workqueue"]


_select_threading_layer()

_layer_lock = threading.Lock()
_layer: str | None = None


def threading_layer() -> str:
    """The Numba threading layer in use (runs a tiny parallel kernel the first time)."""
    global _layer
    if _layer is None:
        with _layer_lock:
            if _layer is None:
                if _forked_omp:  # a parallel region here would be killed by numba
                    return "omp"
                # Load the layer without running a parallel region: under workqueue a
                # probe kernel from a non-main thread, while the main thread is in a
                # parallel region, aborts the process (and compiling one costs time).
                from numba.np.ufunc.parallel import _launch_threads

                _launch_threads()
                _layer = numba.threading_layer()
    return _layer


# ------------------------------------------------------------------------ fork safety
# GNU OpenMP's thread pool does not survive fork(): numba's omp layer raises SIGTERM in
# a child that starts a parallel region after its parent launched the pool ("Terminating:
# fork() called from a process already using GNU OpenMP"), and a grandchild would block
# on threads that no longer exist.  So a process forked (at any depth) from one whose
# omp pool was running serves every call from the serial build: same bits, no parallel
# region.  multiprocessing's fork pools, which fork after the parent ran big calls, get
# their parallelism from their processes.  A spawned process starts clean.
_forked_omp = False


def _omp_launched() -> bool:
    par = sys.modules.get("numba.np.ufunc.parallel")
    return bool(par is not None and par._is_initialized and par._threading_layer == "omp")


def _after_fork_in_child() -> None:
    global _forked_omp
    if _forked_omp or _omp_launched():
        _forked_omp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_main_thread = threading.main_thread()

_num_threads = numba.config.NUMBA_NUM_THREADS


def get_num_threads() -> int:
    """Number of threads fastloss's parallel kernels use."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads fastloss's parallel kernels use (1 .. NUMBA_NUM_THREADS).

    Results do not depend on this number: reductions run over fixed-size blocks in a
    fixed order.
    """
    global _num_threads
    n = int(n)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"num_threads must be in [1, {numba.config.NUMBA_NUM_THREADS}], got {n}"
        )
    _num_threads = n


# ------------------------------------------------------------------------- decorators
def _njit(fn, **options):
    """``numba.njit`` with fastloss's cache policy: if no cache directory is writable
    (read-only install, no home directory), compile without the on-disk cache."""
    try:
        return _lock_cache(numba.njit(**options)(fn))
    except RuntimeError as e:  # "cannot cache function ...: no locator available"
        if "cannot cache" not in str(e):
            raise
        return numba.njit(**dict(options, cache=False))(fn)


def inline(fn):
    """A helper inlined into its callers at Numba IR level (LLVM does not reliably
    inline across Numba's per-function modules, and the loops must vectorise).
    Inlined helpers must not reassign their arguments (Numba's SSA check warns)."""
    return numba.njit(inline="always", **_OPTIONS)(fn)


#: Flags for summation helpers only: ``reassoc`` lets LLVM vectorise a float sum (16
#: partial sums instead of one dependency chain: ~15x faster).  The order it picks is
#: fixed by the compiled code, so results stay the same at any thread count; no
#: ``nnan``/``ninf``, so NaN and inf propagate as in a plain sum.
_SUM_OPTIONS = dict(nogil=True, cache=_CACHE, fastmath={"reassoc", "contract"}, error_model="numpy")


def rowfn(fn):
    """A per-row helper (loops over one row; element helpers are inlined into it).
    Compiled once per signature and *called* from kernels, so the vector math is not
    duplicated into every kernel (compile time) and Numba's SSA checks stay quiet."""
    return _njit(fn, **_OPTIONS)


def accumulator(fn):
    """A summation helper (not inlined: its ``reassoc`` flag must stay inside it)."""
    return _njit(fn, **_SUM_OPTIONS)


def _prange_only() -> dict:
    """``parallel=`` options for kernels that parallelise through ``prange`` alone: the
    array-expression, reduction-detection and fusion passes are skipped, which cuts the
    parallel build's compile time (about 7 %, ``notes/coldstart.md``).  Fresh per call:
    numba pops the keys it reads."""
    return dict(prange=True, comprehension=False, reduction=False, inplace_binop=False,
                setitem=False, numpy=False, stencil=False, fusion=False)


def instantiate(template, name, doc=None, **bind):
    """A copy of ``template`` named ``name`` (its own qualname, hence its own cache
    entries) whose globals are a snapshot of the template's with ``bind`` added: how one
    body becomes several kernels (Numba resolves the bound names at compile time)."""
    fn = _pytypes.FunctionType(template.__code__, dict(template.__globals__, **bind), name)
    fn.__qualname__ = name
    fn.__module__ = template.__module__
    fn.__doc__ = template.__doc__ if doc is None else doc
    return fn


@intrinsic
def as_readonly(typingctx, arr):
    """``arr`` typed as a read-only array (the same pointer and data model; one new
    reference).  Lets a kernel take what the caller has, writeable or not, and call range
    functions compiled for read-only inputs without a second specialisation of them."""
    if not isinstance(arr, _nbtypes.Array):
        return None
    sig = arr.copy(readonly=True)(arr)

    def codegen(context, builder, signature, args):
        context.nrt.incref(builder, signature.args[0], args[0])
        return args[0]

    return sig, codegen


class Kernel:
    """A kernel compiled both ways; :func:`pick` chooses per call."""

    __slots__ = ("parallel", "serial", "__name__")

    def __init__(self, fn):
        self.__name__ = fn.__name__
        self.parallel = _njit(fn, parallel=_prange_only(), **_OPTIONS)
        # A distinct function object with its own qualname so the two builds get
        # their own on-disk cache files.
        serial_fn = _pytypes.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
        )
        serial_fn.__qualname__ = fn.__qualname__ + "_serial"
        serial_fn.__module__ = fn.__module__
        self.serial = _njit(serial_fn, parallel=False, **_OPTIONS)

    def __repr__(self):
        return f"<fastloss kernel {self.__name__}>"


def kernel(fn) -> Kernel:
    """Decorate a kernel body (uses ``numba.prange`` over blocks)."""
    return Kernel(fn)


class _Local(threading.local):
    force = False  # a class default: no AttributeError on every call (see _core._Flag)


_local = _Local()


class force_parallel:
    """Context manager: this thread's calls take the parallel build whatever their size
    (``fastloss.warmup`` uses it to compile both builds on tiny inputs)."""

    def __enter__(self):
        _local.force = True

    def __exit__(self, *exc):
        _local.force = False


# ------------------------------------------------------------ the parallel build, later
# A parallel build costs 2-3x its serial twin to compile (numba outlines the prange body
# and compiles it again).  When a call would run a parallel build that is neither in
# memory nor in the on-disk cache, it runs the serial build (the same bits) and the
# parallel one compiles in a background thread, into memory and the cache; later calls
# use it once it is there.  A fork waits for those compiles (numba's compiler lock must
# not be held by a thread the child does not have), and so does interpreter exit.
# ``FASTLOSS_LAZY_PARALLEL=0`` compiles in the call instead; ``force_parallel`` (warm-up)
# always does.
_LAZY_PARALLEL = os.environ.get("FASTLOSS_LAZY_PARALLEL", "1").lower() not in (
    "0", "false", "no", "off"
)
_bg_lock = threading.Lock()
_bg_threads: dict = {}  # parallel dispatcher -> the thread compiling it
_bg_failed: set = set()  # background compiles that raised: the call compiles (and raises)


def _parallel_ready(disp) -> bool:
    """The parallel build runs without a compile wait (or must be compiled in the call)."""
    if disp.overloads or disp in _bg_failed:
        return True
    if disp in _bg_threads:
        return False
    cache_file = getattr(getattr(disp, "_cache", None), "_cache_file", None)
    try:
        return bool(cache_file is not None and cache_file._load_index())
    except Exception:  # an unreadable index: numba's own load decides
        return True


def _background_compile(disp, sig):
    try:
        disp.compile(sig)
    except Exception:
        _bg_failed.add(disp)
    finally:
        with _bg_lock:
            _bg_threads.pop(disp, None)


class _SerialNow:
    """The serial build for this call; the parallel one compiles in the background."""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __call__(self, *args):
        result = self.k.serial(*args)
        disp = self.k.parallel
        sig = tuple(disp.typeof_pyval(a) for a in args)
        with _bg_lock:
            if disp in _bg_threads or disp.overloads:
                return result
            t = threading.Thread(target=_background_compile, args=(disp, sig),
                                 name=f"fastloss-compile-{self.k.__name__}")
            _bg_threads[disp] = t
        t.start()
        return result


def wait_for_compiles(timeout: float | None = None) -> None:
    """Wait until the parallel builds compiling in the background are done."""
    while True:
        with _bg_lock:
            threads = list(_bg_threads.values())
        if not threads:
            return
        for t in threads:
            t.join(timeout)
        if timeout is not None:
            return


def _before_fork() -> None:
    """Wait for the background builds, then hold Numba's compiler lock across the fork:
    a fork while another thread compiles (a user's first call, a warm-up thread) would
    leave the child with that lock held by a thread that does not exist there, and its
    first compile would wait forever."""
    wait_for_compiles()
    _compiler_lock.acquire()


def _after_fork() -> None:
    _compiler_lock.release()


if hasattr(os, "register_at_fork"):
    from numba.core.compiler_lock import global_compiler_lock as _compiler_lock

    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork)


def runs_serial(work: int, rows: int = -1) -> bool:
    """True when :func:`pick` runs the serial build for this size whatever the thread
    count (too small to thread, and not inside :func:`force_parallel`): the condition of
    the small calls that run the serial build in one kernel call of their own."""
    small = work < PARALLEL_MIN_WORK if rows < 0 else (
        rows < PARALLEL_MIN_ROWS or work < PARALLEL_MIN_ROW_WORK
    )
    return small and not _local.force


def pick(k: Kernel, work: int, rows: int = -1, threads: int | None = None):
    """The build to run for ``work`` elements (in ``rows`` rows, for row kernels) from
    the calling thread, with at most ``threads`` threads (default: :func:`get_num_threads`)."""
    if runs_serial(work, rows):
        return k.serial
    n = _num_threads if threads is None else min(threads, numba.config.NUMBA_NUM_THREADS)
    if n <= 1 or _forked_omp:
        return k.serial
    if threading.current_thread() is not _main_thread and threading_layer() == "workqueue":
        return k.serial
    if _LAZY_PARALLEL and not _parallel_ready(k.parallel):
        if not _local.force:
            return _SerialNow(k)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)  # numba's setting is per Python thread
    return k.parallel
