"""Kept for old links: ``python bench/report.py [ARGS]`` is ``fastloss bench -o bench/results
[ARGS]`` (the benchmark ships in the package: ``fastloss/_bench/``)."""

from __future__ import annotations

import pathlib
import sys

from fastloss.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a in ("-o", "--output-dir") or a.startswith("--output-dir=") for a in args):
        args = ["-o", str(pathlib.Path(__file__).resolve().parent / "results"), *args]
    sys.exit(main(["bench", *args]))
