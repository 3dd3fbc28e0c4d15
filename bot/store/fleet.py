"""SQL for the gateway fleet: each gateway account's circuit breaker and adaptive concurrency.

One row per gateway (`gateway_health`, migration 0010), shared by every process and changed
only inside a transaction that reads the database's clock, so processes with skewed clocks
agree on when a circuit opened and when its cool-down ends. The rules (bot/engine/fleet.py
decides which errors count):

- circuit: closed → open after `threshold` consecutive failed creates → after `cooldown`
  seconds one caller is let through as a probe (half_open; the probe is lent for `probe_ttl`
  seconds, then another may take it) → closed on any success, open again on the probe's failure;
- concurrency (AIMD): NULL means the configured ceiling; a 429 or a concurrency error halves
  it (at most once per `spacing` seconds, so one burst of refusals halves it once), and every
  window of successes as long as the current value adds one, up to the ceiling (NULL again).

A mixin of `Store`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.store.database import Database, Tx

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
#: What `circuit_admit` answers: go (closed), go as the probe, or stay away (open).
PROBE = "probe"


@dataclass(frozen=True)
class GatewayHealth:
    """One gateway account as every process sees it (for `/seedance-admin status`)."""

    provider: str
    circuit: str  # closed | open | half_open
    failures: int  # consecutive failed creates
    effective: int | None  # jobs in flight allowed now (None: the ceiling, unknown here)
    ceiling: int | None
    last_error: str | None  # scrubbed of secrets when it was written
    last_error_at: float | None  # the database's clock
    opened_at: float | None


def _health(row: Any, ceiling: int | None) -> GatewayHealth:
    stored = row["effective"]
    effective = ceiling if stored is None else (
        int(stored) if ceiling is None else min(int(stored), ceiling))
    return GatewayHealth(
        provider=str(row["provider"]), circuit=str(row["circuit"]),
        failures=int(row["failures"]), effective=effective, ceiling=ceiling,
        last_error=row["last_error"], last_error_at=row["last_error_at"],
        opened_at=row["opened_at"])


class FleetStore:
    """Circuits and adaptive concurrency per gateway. `Store` provides the rest."""

    db: Database
    _read: Callable[..., Awaitable[list[Any]]]
    _atomic: Callable[..., Awaitable[Any]]
    _lock_row: Callable[[str], str]

    async def _gateway_row(self, tx: Tx, provider: str) -> tuple[Any, float]:
        """The gateway's row (made on first use), locked, and the database's clock."""
        await tx.execute(
            "INSERT INTO gateway_health (provider) VALUES (?) ON CONFLICT (provider) DO NOTHING",
            (provider,))
        row = await tx.fetchrow(
            self._lock_row("SELECT * FROM gateway_health WHERE provider = ?"), (provider,))
        now = float(await tx.fetchval(f"SELECT {self.db.now_sql}"))
        return row, now

    async def _change(self, provider: str, decide: Callable[[Any, float], tuple[
            dict[str, Any], Any]]) -> Any:
        """Read the row, let `decide` return (columns to set, answer), write, answer."""

        async def body(tx: Tx) -> Any:
            row, now = await self._gateway_row(tx, provider)
            sets, answer = decide(row, now)
            if sets:
                columns = ", ".join(f"{c} = ?" for c in sets)
                await tx.execute(f"UPDATE gateway_health SET {columns} WHERE provider = ?",
                                 (*sets.values(), provider))
            return answer

        return await self._atomic(body, lock=f"seedance:gateway:{provider}")

    async def _healthy(self, provider: str) -> bool:
        """Closed, no failure counted, at its ceiling (or never seen): the common case."""
        rows = await self._read(
            "SELECT circuit, failures, effective FROM gateway_health WHERE provider = ?",
            (provider,))
        return not rows or (rows[0]["circuit"] == CLOSED and not int(rows[0]["failures"])
                            and rows[0]["effective"] is None)

    # ---- the circuit ------------------------------------------------------------------------
    async def circuit_admit(self, provider: str, *, cooldown: float, probe_ttl: float) -> str:
        """May a create go to `provider` now? `closed`, `probe` (the one caller let through a
        half-open circuit) or `open`. A closed circuit costs one read, no transaction."""
        if await self._healthy(provider):
            return CLOSED

        def decide(row: Any, now: float) -> tuple[dict[str, Any], str]:
            if row["circuit"] == CLOSED:
                return {}, CLOSED
            if row["circuit"] == OPEN and now < float(row["opened_at"] or 0.0) + cooldown:
                return {}, OPEN
            if row["circuit"] == HALF_OPEN and row["probe_until"] is not None \
                    and now < float(row["probe_until"]):
                return {}, OPEN  # another caller's probe is out
            return {"circuit": HALF_OPEN, "probe_until": now + probe_ttl}, PROBE

        answer: str = await self._change(provider, decide)
        return answer

    async def circuit_is_open(self, provider: str, *, cooldown: float) -> bool:
        """Would `circuit_admit` turn a caller away now? (Reads only: takes no probe.)"""
        rows = await self._read(
            f"SELECT circuit, opened_at, probe_until, {self.db.now_sql} AS now"
            " FROM gateway_health WHERE provider = ?", (provider,))
        if not rows or rows[0]["circuit"] == CLOSED:
            return False
        row, now = rows[0], float(rows[0]["now"])
        if row["circuit"] == OPEN:
            return now < float(row["opened_at"] or 0.0) + cooldown
        return row["probe_until"] is not None and now < float(row["probe_until"])

    async def gateway_failed(self, provider: str, error: str, *, threshold: int) -> str:
        """A create failed in a way that speaks of the gateway's health; the circuit after."""

        def decide(row: Any, now: float) -> tuple[dict[str, Any], str]:
            failures = int(row["failures"]) + 1
            sets: dict[str, Any] = {"failures": failures, "last_error": error[:300],
                                    "last_error_at": now}
            circuit = str(row["circuit"])
            if circuit == HALF_OPEN or (circuit == CLOSED and failures >= max(1, threshold)):
                circuit = OPEN
                sets.update(circuit=OPEN, opened_at=now, probe_until=None)
            return sets, circuit

        answer: str = await self._change(provider, decide)
        return answer

    async def gateway_succeeded(self, provider: str, *, ceiling: int,
                                count: int = 1) -> int | None:
        """`count` creates succeeded: the circuit closes, and a lowered concurrency grows by
        one per window of successes as long as itself; the effective value after (None:
        ceiling). Nothing to change on a healthy gateway: one read, no transaction."""
        if await self._healthy(provider):
            return None

        def decide(row: Any, now: float) -> tuple[dict[str, Any], int | None]:
            sets: dict[str, Any] = {}
            if row["circuit"] != CLOSED or int(row["failures"]):
                sets.update(circuit=CLOSED, failures=0, opened_at=None, probe_until=None)
            effective = row["effective"]
            if effective is None:
                return sets, None
            effective, successes = int(effective), int(row["successes"])
            for _ in range(count):
                successes += 1
                if successes >= effective:
                    effective, successes = effective + 1, 0
                if effective >= ceiling:
                    sets.update(effective=None, successes=0)
                    return sets, None
            sets.update(effective=effective, successes=successes)
            return sets, effective

        answer: int | None = await self._change(provider, decide)
        return answer

    async def gateway_throttled(self, provider: str, error: str, *, ceiling: int,
                                spacing: float) -> int:
        """A 429 or a concurrency error: halve the jobs in flight allowed (once per
        `spacing` seconds); the effective value after."""

        def decide(row: Any, now: float) -> tuple[dict[str, Any], int]:
            current = min(ceiling, int(row["effective"])) if row["effective"] is not None \
                else ceiling
            sets: dict[str, Any] = {"last_error": error[:300], "last_error_at": now}
            last = row["decreased_at"]
            if last is not None and now - float(last) < spacing:
                return sets, current
            lowered = max(1, current // 2)
            sets.update(effective=lowered, successes=0, decreased_at=now)
            return sets, lowered

        answer: int = await self._change(provider, decide)
        return answer

    # ---- reading ----------------------------------------------------------------------------
    async def gateway_limits(self) -> dict[str, int]:
        """The lowered in-flight limits (gateways at their ceiling are not listed)."""
        rows = await self._read(
            "SELECT provider, effective FROM gateway_health WHERE effective IS NOT NULL")
        return {str(r["provider"]): int(r["effective"]) for r in rows}

    async def gateway_health(
        self, ceilings: Mapping[str, int] | None = None, *,
        default: Callable[[str], int] | None = None,
    ) -> list[GatewayHealth]:
        """Every gateway known here: its circuit, its effective concurrency (bounded by
        `ceilings`, the configured in-flight ceilings, else `default(name)`) and its last
        error. Gateways in `ceilings` without a row yet are listed as healthy, at their
        ceiling."""
        ceilings = dict(ceilings or {})
        rows = {str(r["provider"]): r for r in await self._read(
            "SELECT * FROM gateway_health ORDER BY provider")}
        healths = [_health(row, ceilings.get(name, default(name) if default else None))
                   for name, row in rows.items()]
        healths += [GatewayHealth(name, CLOSED, 0, ceiling, ceiling, None, None, None)
                    for name, ceiling in ceilings.items() if name not in rows]
        return sorted(healths, key=lambda h: h.provider)


__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "PROBE", "FleetStore", "GatewayHealth"]
