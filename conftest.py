"""Repository-level pytest configuration.

``--doctest-modules`` (pyproject.toml) imports every module under the test paths; the
benchmark *scripts* are programs, not modules to import (threshold.py sets environment
variables for its own run), so they are not collected.

The tests run every parallel build they pick in the call (``FASTLOSS_LAZY_PARALLEL=0``):
with an empty cache, a first large call would otherwise run the serial build while the
parallel one compiles in the background, and a test of the parallel build would
silently test the serial one.  ``tests/test_cache.py`` tests the lazy path in its own
processes.
"""

import os

os.environ.setdefault("FASTLOSS_LAZY_PARALLEL", "0")

collect_ignore = ["bench/report.py", "bench/threshold.py", "bench/boost.py"]
