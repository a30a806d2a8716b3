"""Compiled kernels (numpy + numba only): candles, ring-buffer windows, indicators, and the
byte scanner of market-data frames."""


def warmup() -> None:
    """Compile every kernel on tiny inputs; with a warm numba cache this only loads them."""
    from trader.kernels import candles, frame_scan, indicators, ring

    for module in (ring, candles, indicators, frame_scan):
        module.warmup()
