"""What a request costs in credits: 1 credit = 1 s of 480p unless configured, whatever the
gateway charges (docs/GATEWAYS.md#billing)."""

from __future__ import annotations

from bot.config import DEFAULT_PRICES
from bot.models import GenerationRequest


def credits_for(request: GenerationRequest, prices: dict[str, int] | None = None) -> int:
    """Duration × the resolution's price per second × the number of results asked for.

    A request may carry `number_results` (gateways that return several videos per task); when it
    does not, one result is assumed.
    """
    table = prices if prices is not None else DEFAULT_PRICES
    per_second = table.get(request.resolution.value)
    if per_second is None:
        raise ValueError(f"no price for {request.resolution.value}; add it to SEEDANCE_PRICES")
    results = int(getattr(request, "number_results", 1) or 1)
    return max(0, request.duration) * per_second * max(1, results)
