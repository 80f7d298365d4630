"""Numba kernels, one module per family.  No validation here: see ``fastloss._core``."""
