"""Stripe's published minimum charge per currency, in minor units (docs.stripe.com/currencies,
"Minimum and maximum charge amounts"), for Stripe's settlement currencies.

Stripe charges nothing smaller: an invoice whose amount due is under the minimum is marked paid at
finalization, uncharged, and the amount goes to the customer's balance for the next invoice to
collect. A charge in a currency outside the table must reach the settlement currency's minimum
after conversion, which depends on the day's rate: ``minimum_charge`` says None for it. The Stripe
double charges by this same table.
"""

from __future__ import annotations

STRIPE_MINIMUM_CHARGE: dict[str, int] = {
    "usd": 50,  # $0.50
    "aed": 200,  # 2.00 AED
    "aud": 50,  # $0.50
    "bgn": 100,  # 1.00 BGN
    "brl": 50,  # R$0.50
    "cad": 50,  # $0.50
    "chf": 50,  # 0.50 CHF
    "czk": 1500,  # 15.00 Kč
    "dkk": 250,  # 2.50 kr.
    "eur": 50,  # €0.50
    "gbp": 30,  # £0.30
    "hkd": 400,  # $4.00
    "huf": 17500,  # 175.00 Ft (two decimals in the API)
    "inr": 50,  # ₹0.50
    "jpy": 50,  # ¥50 (zero-decimal)
    "mxn": 1000,  # $10
    "myr": 200,  # RM 2
    "nok": 300,  # 3.00 kr.
    "nzd": 50,  # $0.50
    "pln": 200,  # 2.00 zł
    "ron": 200,  # 2.00 lei
    "sek": 300,  # 3.00 kr.
    "sgd": 50,  # $0.50
    "thb": 1000,  # ฿10
}


def minimum_charge(currency: str) -> int | None:
    """Stripe's minimum charge in ``currency``'s minor units, or None where Stripe publishes none."""
    return STRIPE_MINIMUM_CHARGE.get(currency.lower())
