"""Repository-level pytest configuration.

``--doctest-modules`` (pyproject.toml) imports every module under the test paths; the
benchmark *scripts* are programs, not modules to import (threshold.py sets environment
variables for its own run), so they are not collected.
"""

collect_ignore = ["bench/report.py", "bench/threshold.py", "bench/boost.py"]
