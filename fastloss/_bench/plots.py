"""PNG plots (matplotlib, Agg): time against batch size per library, the fraction of the
copy bandwidth per loss, and the speedup over each peer at the large size."""

from __future__ import annotations

LIBS = (("fastloss", "fastloss", "C0"), ("fastloss_out", "fastloss out=", "C9"),
        ("numpy", "NumPy", "C2"), ("torch", "PyTorch", "C3"), ("jax", "JAX", "C1"))


def _sweep_points(results, loss, classes=None):
    rows = [r for r in results if r["loss"] == loss and not r["options"] and not r["variant"]
            and (classes is None or (len(r["shape"]) == 2 and r["shape"][1] == classes))
            and (classes is not None or len(r["shape"]) == 1)]
    return sorted(rows, key=lambda r: r["shape"][0])


def time_vs_batch(plt, path, results, meta):
    panels = [("cross_entropy", 1000, "rows (batch), 1000 classes"),
              ("mse_loss", None, "elements")]
    if not any(_sweep_points(results, loss, classes) for loss, classes, _ in panels):
        return False  # no sweep case in this run: no empty axes
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (loss, classes, xlabel) in zip(axes, panels, strict=True):
        pts = _sweep_points(results, loss, classes)
        for impl, label, color in LIBS:
            xy = [(r["shape"][0], r["impls"][impl]["median_s"]) for r in pts
                  if impl in r["impls"]]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker="o", label=label, color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("time per call, loss + gradient (s)")
        ax.set_title(f"{loss}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"float32, {meta['threads']} threads — {meta['machine']['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def bandwidth(plt, path, results, meta):
    rows = [r for r in results if r["derived"].get("bw_out") is not None]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(rows) + 1.2)))
    y = range(len(rows))
    h = 0.38
    ax.barh([i - h / 2 for i in y], [r["derived"]["bw_out"] * 100 for r in rows], h,
            label="out= buffer", color="C0")
    ax.barh([i + h / 2 for i in y],
            [(r["derived"].get("bw_inplace") or 0) * 100 for r in rows], h,
            label="in place (out=input)", color="C9")
    for v, style in ((50, ":"), (70, "--"), (80, "-.")):
        ax.axvline(v, color="k", lw=0.8, ls=style)
    ax.set_yticks(list(y), [f"{r['loss']} {r['label']}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of the same-run copy bandwidth (median over rounds)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"fraction of copy bandwidth, {meta['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def speedups(plt, path, results, meta):
    rows = [r for r in results if r["role"] == "large"]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows) + 2), 5))
    w = 0.27
    for k, (peer, label, color) in enumerate((("numpy", "vs NumPy", "C2"),
                                              ("torch", "vs PyTorch", "C3"),
                                              ("jax", "vs JAX", "C1"))):
        vals = [r["derived"].get(f"vs_{peer}") or float("nan") for r in rows]
        ax.bar([i + (k - 1) * w for i in range(len(rows))], vals, w, label=label, color=color)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("peer time / fastloss time")
    ax.set_xticks(range(len(rows)), [r["loss"] for r in rows], rotation=60, ha="right",
                  fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title(f"speedup at the large size, float32, {meta['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PLOTS = {
    "time_vs_batch.png": (time_vs_batch, "time against batch size per library"),
    "bandwidth.png": (bandwidth, "fraction of copy bandwidth per loss"),
    "speedup.png": (speedups, "speedup over each peer at the large size"),
}


def write_plots(mpl, outdir, results, meta) -> dict:
    """Write every plot that has data; returns ``{file name: alt text}``."""
    import matplotlib.pyplot as plt

    del mpl  # imported (backend set) by the caller
    done = {}
    for name, (fn, alt) in PLOTS.items():
        if fn(plt, outdir / name, results, meta):
            done[name] = alt
        else:
            # a plot of an earlier run in this directory would sit beside a report that
            # does not show it, and describe other cases
            (outdir / name).unlink(missing_ok=True)
    return done
