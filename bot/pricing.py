"""What a request costs in credits: 1 credit = 1 s of 480p unless SEEDANCE_PRICES says otherwise
(DEFAULT_PRICES in bot/config.py), whatever the gateway charges
(docs/GATEWAYS.md#credits-and-billing)."""

from __future__ import annotations

from bot.config import DEFAULT_PRICES
from bot.models import GenerationRequest


def credits_for(request: GenerationRequest, prices: dict[str, int] | None = None) -> int:
    """Duration × the resolution's price per second × the number of results asked for.

    `request.results` is how many videos one task returns (Runware's numberResults): each is
    a whole render, billed by the gateway as such, so each costs its own credits.
    """
    table = prices if prices is not None else DEFAULT_PRICES
    per_second = table.get(request.resolution.value)
    if per_second is None:
        raise ValueError(f"no price for {request.resolution.value}; add it to SEEDANCE_PRICES")
    return max(0, request.duration) * per_second * max(1, request.results)
