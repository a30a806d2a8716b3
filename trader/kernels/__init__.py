"""Compiled kernels (numpy + numba only): candles, ring-buffer windows, indicators."""


def warmup() -> None:
    """Compile every kernel on tiny inputs; with a warm numba cache this only loads them."""
    from trader.kernels import candles, indicators, ring

    for module in (ring, candles, indicators):
        module.warmup()
