"""The Discord store's SKUs and what each buys (SEEDANCE_SKUS, bot/config.py).

"123=consumable:100,456=guild_subscription:3000/month,789=user_subscription:300/month":
a consumable adds its credits to the buyer's purchased credits once; a guild subscription
raises the server's monthly pool while active; a user subscription raises the subscriber's
daily (`/day`) or monthly (`/month`) credits while active (bot/service/premium.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SkuKind = Literal["consumable", "guild_subscription", "user_subscription"]
_KINDS: dict[str, SkuKind] = {"consumable": "consumable",
                              "guild_subscription": "guild_subscription",
                              "user_subscription": "user_subscription"}
SKU_KINDS: tuple[str, ...] = tuple(_KINDS)


@dataclass(frozen=True)
class Sku:
    id: str
    kind: SkuKind
    credits: int
    period: str | None = None  # day | month for subscriptions; None for a consumable


def parse_skus(text: str) -> dict[str, Sku]:
    """The SKU table by id; a bad entry raises ValueError naming it and the form to use."""
    form = ("use the form 123=consumable:100,456=guild_subscription:3000/month,"
            "789=user_subscription:300/day (a SKU id, its kind, whole credits and, for a "
            "subscription, /day or /month)")
    table: dict[str, Sku] = {}
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        sku_id, sep, rest = entry.partition("=")
        kind, colon, amount = rest.strip().partition(":")
        credits, slash, period = amount.strip().partition("/")
        sku_id, kind, credits, period = sku_id.strip(), kind.strip(), credits.strip(), \
            period.strip()
        ok = (sep and colon and sku_id.isdigit() and kind in SKU_KINDS and credits.isdigit()
              and int(credits) > 0 and sku_id not in table)
        if ok and kind == "consumable":
            ok = not slash
        elif ok:
            ok = period in ("day", "month") and (kind != "guild_subscription" or period == "month")
        if not ok:
            raise ValueError(f"bad entry {entry!r}: {form}; a guild subscription is per month,"
                             " each SKU is listed once")
        table[sku_id] = Sku(sku_id, _KINDS[kind], int(credits),
                            None if kind == "consumable" else period)
    return table


__all__ = ["SKU_KINDS", "Sku", "SkuKind", "parse_skus"]
