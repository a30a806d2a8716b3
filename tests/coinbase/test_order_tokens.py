"""The create-order JWT minted ahead of time: valid, used once, never stale."""

from __future__ import annotations

from tests.coinbase.test_auth import NAME, ORDERS, ec_pem, verifier_for
from tests.helpers import eventually
from trader.coinbase.auth import TOKEN_MAX_AGE_S, Credentials, PremintedTokens

URL = "http://127.0.0.1:8123" + ORDERS


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


async def test_a_pre_minted_token_verifies_and_serves_one_request_only():
    pem, key = ec_pem()
    clock = Clock()
    tokens = PremintedTokens(Credentials(NAME, pem, "test"), clock)
    tokens.refill(URL)
    first = tokens.take(URL)
    second = tokens.take(URL)  # nothing minted yet: a fresh one, never the same token
    assert first != second
    verifier = verifier_for(key)
    for token in (first, second):
        assert verifier.verify_rest(token, "POST", "127.0.0.1:8123", ORDERS) == NAME
    await eventually(lambda: tokens.minted, timeout_s=2)  # the next one, minted meanwhile
    third = tokens.take(URL)
    assert third not in (first, second)
    assert verifier.verify_rest(third, "POST", "127.0.0.1:8123", ORDERS) == NAME


async def test_a_token_older_than_the_limit_is_replaced_by_a_fresh_one():
    pem, _ = ec_pem()
    clock = Clock()
    tokens = PremintedTokens(Credentials(NAME, pem, "test"), clock)
    tokens.refill(URL)
    stale = tokens._ready[1]
    clock.now_s += TOKEN_MAX_AGE_S + 1
    assert tokens.take(URL) != stale


async def test_a_token_for_another_url_is_not_used():
    pem, _ = ec_pem()
    tokens = PremintedTokens(Credentials(NAME, pem, "test"), Clock())
    tokens.refill("http://127.0.0.1:9999" + ORDERS)
    other = tokens._ready[1]
    assert tokens.take(URL) != other
