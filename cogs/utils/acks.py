"""Acknowledging an interaction, measured: Discord allows 3 s from an interaction's creation to
its first answer, so every defer goes through `defer` (and a first answer sent at once through
`acknowledged`), which reports the time taken to this process's metrics (bot/metrics.py,
`seedance_interaction_ack_seconds` on /metrics)."""

from __future__ import annotations

import time
from typing import Any

import discord


def acknowledged(interaction: discord.Interaction[Any]) -> None:
    """Record that `interaction` was just answered: seconds since Discord created it (its
    snowflake's time), per command (`button` for components)."""
    metrics = getattr(getattr(interaction.client, "core", None), "metrics", None)
    if metrics is None:
        return
    command = interaction.command
    name = command.qualified_name if command is not None else "button"
    metrics.observe_ack(name, time.time() - interaction.created_at.timestamp())


async def defer(interaction: discord.Interaction[Any], *, ephemeral: bool = False,
                thinking: bool = False) -> None:
    """`interaction.response.defer(...)`, measured."""
    await interaction.response.defer(ephemeral=ephemeral, thinking=thinking)
    acknowledged(interaction)
