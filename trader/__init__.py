"""trader: a single-process asyncio trading daemon for Coinbase Advanced Trade."""

__version__ = "0.1.0"
