"""A Coinbase-protocol exchange on loopback, replaying real candles as trades."""
