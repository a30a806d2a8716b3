"""`trader sim` options for the private side: the API key, the account, fees, faults and the
answers Coinbase leaves unverified (a repeated client order id, id retention).

Kept light at import (argparse and the stdlib only): the CLI builds its parser on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

FAULT_RATES = ("rate_limit", "server_error", "accept_timeout", "user_drop")


def add_private_options(parser: argparse.ArgumentParser) -> None:
    """Add the private-side options to the `sim` subcommand."""
    parser.add_argument("--key-file", type=Path, metavar="PATH",
                        help="CDP key JSON whose key may trade; written with a fresh P-256 "
                             "key (mode 600) when missing. Without it every private "
                             "request is refused")
    parser.add_argument("--balance", action="append", default=[], metavar="CUR=AMOUNT",
                        type=parse_balance, help="a starting balance (default: USD=10000)")
    parser.add_argument("--maker-fee-bps", type=Decimal, default=Decimal(50), metavar="BPS",
                        help="maker fee, basis points (default 50)")
    parser.add_argument("--taker-fee-bps", type=Decimal, default=Decimal(90), metavar="BPS",
                        help="taker fee, basis points (default 90)")
    for fault, chance in (("rate_limit", "private request answered 429"),
                          ("server_error", "private request answered 5xx"),
                          ("accept_timeout", "order created but left unanswered"),
                          ("user_drop", "user-channel frame replaced by a dropped connection")):
        parser.add_argument(f"--{fault.replace('_', '-')}-rate", type=float, default=0.0,
                            metavar="P", help=f"probability per {chance}")
    parser.add_argument("--accept-delay", type=float, default=60.0, metavar="S",
                        help="how long an accepted-then-timeout order waits for its answer")
    parser.add_argument("--duplicate-answer", choices=("existing", "refuse"),
                        default="existing",
                        help="answer to a repeated client order id: the existing order "
                             "(success) or a DUPLICATE_CLIENT_ORDER_ID refusal")
    parser.add_argument("--lost-hidden", type=float, default=0.0, metavar="S",
                        help="an order whose answer was lost stays PENDING, off the book and "
                             "out of every lookup, this long (default 0)")
    parser.add_argument("--id-retention", type=float, default=0.0, metavar="S",
                        help="forget a closed order's client order id this long after it "
                             "closed, so a repeat creates a new order (default 0: never)")


def private_config(args: argparse.Namespace) -> Any:
    """The PrivateConfig the parsed options describe."""
    from trader.simulator.exchange import ExchangeConfig
    from trader.simulator.order_faults import OrderFaults
    from trader.simulator.orders_api import PrivateConfig

    balances = dict(args.balance) or {"USD": Decimal(10000)}
    exchange = ExchangeConfig(balances=balances, maker_fee_bps=args.maker_fee_bps,
                              taker_fee_bps=args.taker_fee_bps, seed=args.seed)
    rates = {f"{fault}_rate": getattr(args, f"{fault}_rate") for fault in FAULT_RATES}
    faults = OrderFaults(seed=args.seed, accept_delay_s=args.accept_delay,
                         duplicate_answer=args.duplicate_answer,
                         lost_hidden_s=args.lost_hidden, id_retention_s=args.id_retention,
                         **rates)
    keys = dict([public_key_of(args.key_file)]) if args.key_file else {}
    return PrivateConfig(exchange=exchange, faults=faults, keys=keys)


def parse_balance(spec: str) -> tuple[str, Decimal]:
    """`USD=10000` -> ("USD", Decimal("10000"))."""
    currency, _, amount = spec.partition("=")
    try:
        return currency.strip().upper(), Decimal(amount)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"--balance {spec!r}: expected CUR=AMOUNT") from None


def public_key_of(path: Path) -> tuple[str, Any]:
    """(key name, public key) of a CDP key file, creating the file when it does not exist."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not path.exists():
        generated = ec.generate_private_key(ec.SECP256R1())
        pem = generated.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
        name = f"organizations/simulator/apiKeys/{uuid.uuid4()}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump({"name": name, "privateKey": pem}, out)
    key = json.loads(path.read_text())
    private = serialization.load_pem_private_key(key["privateKey"].encode(), password=None)
    return key.get("name") or key["id"], private.public_key()
