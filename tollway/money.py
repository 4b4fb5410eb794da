"""Amounts of money as people read them. No I/O.

Tier tables and Stripe hold amounts in the currency's minor unit (cents: 2900 is $29.00), and
per-unit prices as decimals of it (0.05 is a twentieth of a cent). Stripe's zero-decimal
currencies (yen, won...) have no minor unit: 500 JPY is ¥500.
"""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "inr": "₹", "jpy": "¥"}


def money(minor: Decimal | int | str, currency: str) -> str:
    """``minor`` units of ``currency`` in major units: "$29.00", "$0.0005", "¥500",
    "12.50 CHF". Exact: a fraction of a cent is shown whole, never rounded away."""
    cur = currency.lower()
    places = 0 if cur in ZERO_DECIMAL else 2
    major = Decimal(minor).scaleb(-places)
    step = Decimal(1).scaleb(-places)
    whole = major == major.quantize(step)  # no fraction of the minor unit
    text = f"{major:,.{places}f}" if whole else f"{major.normalize():,f}"
    symbol = SYMBOLS.get(cur)
    return f"{symbol}{text}" if symbol else f"{text} {cur.upper()}"
