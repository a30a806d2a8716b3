"""Research on the live engine: backtests (driver, bar fills, compiled path), metrics, reports."""
