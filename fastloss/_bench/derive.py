"""Numbers derived from a case's raw record: ratios to peers, fractions of the copy
bandwidth, thread scaling, and the issue's goals (reported as met / not met, never
asserted)."""

from __future__ import annotations

import math
import statistics

PEERS = ("numpy", "torch", "jax")


def _median(res, impl):
    v = res["impls"].get(impl)
    return None if v is None else v["median_s"]


def _paired(res, impl):
    """Median over rounds of ``impl``'s bandwidth against the copy of the same round,
    and the fastest sample against the fastest copy."""
    s = res["impls"].get(impl)
    copy = res.get("copy_GBps")
    if s is None or not copy or len(copy) != len(s["samples_s"]):
        return None, None
    b = res["bytes_moved"]
    paired = statistics.median(b / t / (c * 1e9) for t, c in zip(s["samples_s"], copy,
                                                                 strict=True))
    return paired, b / s["min_s"] / (max(copy) * 1e9)


def derive(res: dict) -> dict:
    """Fill ``res["derived"]`` from the raw samples; returns ``res``."""
    d = {}
    fl = _median(res, "fastloss")
    torch_t = [t for t in (_median(res, "torch"), _median(res, "torch_1t")) if t is not None]
    peer_t = {"numpy": _median(res, "numpy"), "jax": _median(res, "jax"),
              # PyTorch's faster thread setting where both were timed (latency and large
              # sizes; the report shows both)
              "torch": min(torch_t) if torch_t else None}
    d["peer_s"] = peer_t
    for p, t in peer_t.items():
        d[f"vs_{p}"] = t / fl if (t is not None and fl) else None
    d["vs_slowest_peer_min"] = min((v for p in PEERS if (v := d[f"vs_{p}"]) is not None),
                                   default=None)
    for impl, key in (("fastloss", "default"), ("fastloss_out", "out"),
                      ("fastloss_inplace", "inplace")):
        t = _median(res, impl)
        d[f"{key}_GBps"] = res["bytes_moved"] / t / 1e9 if t else None
        d[f"bw_{key}"], d[f"bw_{key}_best"] = _paired(res, impl)
    out, inplace = _median(res, "fastloss_out"), _median(res, "fastloss_inplace")
    d["inplace_vs_out"] = inplace / out if (out and inplace) else None
    one = _median(res, "fastloss_1t")
    d["thread_speedup"] = one / fl if (one and fl) else None
    t1, tn = _median(res, "torch_1t"), _median(res, "torch")
    d["torch_thread_speedup"] = t1 / tn if (t1 and tn and res["role"] != "latency") else None
    if res.get("copy_GBps"):
        d["copy_GBps_case"] = statistics.median(res["copy_GBps"])
    res["derived"] = d
    return res


# ============================================================================== goals
def _find(results, loss, role=None, label=None, options=None):
    for r in results:
        if r["loss"] != loss or (role and r["role"] != role) or (label and r["label"] != label):
            continue
        if options is not None and r["options"] != options:
            continue
        return r
    return None


def _goal(text, case, value, threshold, higher=True, fmt="x", note=""):
    if value is None:
        met = None
    else:
        met = bool(value >= threshold) if higher else bool(value <= threshold)
    return {"text": text, "case": case["id"] if case else None, "value": value,
            "threshold": threshold, "met": met, "fmt": fmt, "note": note}


def goals(results: list[dict], quick: bool) -> list[dict]:
    """The issue's goals, each with the measured figure (``None``: not measured)."""
    G = []
    big_ce = _find(results, "cross_entropy", "large")
    tiny_ce = _find(results, "cross_entropy", "latency")
    kl = _find(results, "kl_div_with_logits", "large")
    bce = _find(results, "binary_cross_entropy_with_logits", "large")
    hub = _find(results, "huber_loss", "large")
    mse = _find(results, "mse_loss", "large")
    dv = lambda r, k: None if r is None else r["derived"].get(k)  # noqa: E731

    G.append(_goal("`cross_entropy` large: ≥ 14× PyTorch", big_ce, dv(big_ce, "vs_torch"), 14))
    G.append(_goal("`cross_entropy` large: ≥ 6× JAX", big_ce, dv(big_ce, "vs_jax"), 6))
    G.append(_goal("`cross_entropy` large, in place: ≥ 80% of copy bandwidth", big_ce,
                   dv(big_ce, "bw_inplace"), 0.80, fmt="%"))
    G.append(_goal("`cross_entropy` 32×10, one call through the public API: ≤ 5 µs", tiny_ce,
                   _median(tiny_ce, "fastloss") if tiny_ce else None,
                   5e-6, higher=False, fmt="s"))
    G.append(_goal("`kl_div_with_logits` large (T = 2): ≥ 20× PyTorch", kl,
                   dv(kl, "vs_torch"), 20))
    G.append(_goal("`kl_div_with_logits` large (T = 2): ≥ 10× JAX", kl, dv(kl, "vs_jax"), 10))
    G.append(_goal("`binary_cross_entropy_with_logits` large: ≥ 8× PyTorch", bce,
                   dv(bce, "vs_torch"), 8))
    G.append(_goal("`huber_loss` large: ≥ 8× PyTorch", hub, dv(hub, "vs_torch"), 8))
    G.append(_goal("`mse_loss` large, `out=`: ≥ 70% of copy bandwidth", mse,
                   dv(mse, "bw_out"), 0.70, fmt="%"))

    import fastloss

    named = {"cross_entropy", "kl_div_with_logits", "binary_cross_entropy_with_logits",
             "huber_loss", "mse_loss"}
    softmax_family = ("cross_entropy", "nll_loss", "softmax_focal_loss", "kl_div_with_logits",
                      "js_div_with_logits", "softmax_entropy")
    by_loss = {loss: [r for r in results if r["loss"] == loss and r["role"] != "sweep"]
               for loss in fastloss.LOSSES}
    for loss in softmax_family:
        rs = [r for r in by_loss.get(loss, ()) if r["derived"].get("inplace_vs_out")]
        worst = max(rs, key=lambda r: r["derived"]["inplace_vs_out"], default=None)
        G.append(_goal(f"`{loss}`: in place at least as fast as `out=`, every size", worst,
                       dv(worst, "inplace_vs_out"), 1.05, higher=False, fmt="r",
                       note="the worst size; up to 1.05 counts as met: noise"))
    for loss, rs in by_loss.items():
        if not rs or loss in named:
            continue
        worst = min((r for r in rs if r["derived"].get("vs_slowest_peer_min") is not None),
                    key=lambda r: r["derived"]["vs_slowest_peer_min"], default=None)
        G.append(_goal(f"`{loss}`: faster than every peer, every size", worst,
                       dv(worst, "vs_slowest_peer_min"), 1.0,
                       note="" if worst is None else f"closest: {_weakest(worst)}"))
        if rs[0]["memory_bound"]:
            big = next((r for r in rs if r["role"] == "large"), None)
            G.append(_goal(f"`{loss}` large (memory-bound), `out=`: ≥ 50% of copy bandwidth",
                           big, dv(big, "bw_out"), 0.50, fmt="%"))
    for g in G:
        g["indicative_only"] = quick
    return G


_PEER_NAME = {"numpy": "NumPy", "torch": "PyTorch", "jax": "JAX"}


def _weakest(r):
    d = r["derived"]
    p = min((p for p in PEERS if d[f"vs_{p}"] is not None), key=lambda p: d[f"vs_{p}"])
    return f"{_PEER_NAME[p]}"


def fmt_ratio(v) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.2f}×" if v < 10 else f"{v:.1f}×"
