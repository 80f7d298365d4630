"""``fastloss bench``: the side-by-side benchmark, shipped with the package.

Every loss of ``fastloss.LOSSES`` at a latency size (timed per call through the public
API), a medium and a large size, against a careful NumPy implementation, PyTorch
(``F.<loss>`` + ``.backward()``) where it has the loss and JAX
(``value_and_grad`` under ``jax.jit``) where installed; 1 vs N threads and the fraction of the
same-run copy bandwidth (``out=`` buffer and in place) at the large sizes.  Writes
``REPORT.md``, ``results.json`` (raw samples) and PNG plots to the output directory
(default ``./fastloss-bench``).  PyTorch, JAX and matplotlib are optional (the ``bench``
extra): a missing one is reported as not installed.

    fastloss bench                 # the full run: about 10-15 minutes, ~10 GB peak RAM
    fastloss bench --quick         # smaller sizes, fewer rounds: under 2 minutes
    fastloss bench --readme-table fastloss-bench/results.json   # the README's table

``FASTLOSS_BENCH_SCALE`` (or ``--scale``) multiplies every batch size; below 0.1 the run is
a two-round smoke test of the pipeline (the tests use it), not a measurement.
"""

from __future__ import annotations

__all__ = ["UsageError", "main", "readme_table", "render", "run"]


class UsageError(ValueError):
    """A bad argument of ``fastloss bench`` (the command line's exit status 2)."""


def run(*args, **kwargs):
    """Measure and write the report (see :func:`fastloss._bench.runner.run`)."""
    from .runner import run as _run

    return _run(*args, **kwargs)


def render(*args, **kwargs):
    """Rewrite the report and plots from a ``results.json`` (no measuring)."""
    from .runner import render as _render

    return _render(*args, **kwargs)


def readme_table(results, which: str = "headline") -> str:
    """The README's performance table (markdown) from a ``results.json`` path or its
    loaded contents."""
    from .report import readme_table as _table
    from .runner import load

    if not isinstance(results, dict):
        import pathlib

        if not pathlib.Path(results).is_file():
            raise UsageError(f"{results}: no such file")
        results = load(results)
    return _table(results, which)


def _command(args) -> str:
    parts = ["fastloss bench"]
    if args.quick:
        parts.append("--quick")
    if args.output_dir:
        parts.append(f"-o {args.output_dir}")
    if args.threads is not None:
        parts.append(f"--threads {args.threads}")
    if args.scale is not None:
        parts.append(f"--scale {args.scale:g}")
    else:
        from .cases import scale_from_env

        if scale_from_env() != 1.0:
            # the environment's scale, as an option: the recorded command reruns the same sizes
            parts.append(f"--scale {scale_from_env():g}")
    for s in args.select or ():
        parts.append(f"-k {s}")
    if args.wait_quiet:
        parts.append(f"--wait-quiet {args.wait_quiet:g}")
    return " ".join(parts)


def main(args) -> int:
    """The ``fastloss bench`` subcommand on parsed arguments (``fastloss.cli``)."""
    import pathlib

    from .runner import DEFAULT_DIR

    outdir = args.output_dir or DEFAULT_DIR
    if args.readme_table:
        print(readme_table(args.readme_table, "large" if args.all else "headline"))
        return 0
    if args.render:
        if not pathlib.Path(args.render).is_file():
            raise UsageError(f"{args.render}: no such file")
        render(args.render, outdir)
        print(pathlib.Path(outdir) / "REPORT.md")
        return 0
    run(outdir, quick=args.quick, threads=args.threads, scale=args.scale,
        select=args.select, wait=args.wait_quiet, command=_command(args))
    print(pathlib.Path(outdir) / "REPORT.md")
    return 0
