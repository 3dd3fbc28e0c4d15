"""What the bot says, as pure functions of core objects — testable without Discord."""

from __future__ import annotations

from datetime import UTC, datetime

import discord

from bot.engine import EventKind, JobEvent, JobResult
from bot.errors import Problem
from bot.models import GenerationRequest
from bot.store import JobView

#: Discord's limits that shape our texts.
MAX_CONTENT = 2000
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELD = 1024


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration_words(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def timestamp(unix: float, style: str = "R") -> str:
    """A Discord timestamp that shows in each reader's own time zone."""
    return f"<t:{int(unix)}:{style}>"


def utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def problems_text(problems: list[Problem]) -> str:
    head = "**That request can't be made yet — nothing was spent.** Fix these and try again:\n"
    lines = [f"• **{p.subject}**: {p.message}" for p in problems]
    body = head + "\n".join(lines)
    return clip(body, MAX_CONTENT)


def settings_line(request: GenerationRequest) -> str:
    bits = [
        request.mode.value.replace("_", " "),
        f"{request.duration} s",
        request.resolution.value,
        request.ratio.value,
        "audio on" if request.audio else "no audio",
    ]
    if request.seed is not None:
        bits.append(f"seed {request.seed}")
    if request.camera_fixed:
        bits.append("fixed camera")
    if request.web_search:
        bits.append("web search")
    model = f"{request.provider}" + (f" · {request.model}" if request.model else "")
    bits.append(model)
    return " · ".join(bits)


STAGE_WORDS = {
    "awaiting_approval": "⏸️ waiting for a moderator to approve the prompt",
    "queued": "🕒 queued",
    "submitting": "📤 sending to the gateway",
    "generating": "🎬 generating",
    "downloading": "📥 fetching the video",
    "held": "🛡️ made — waiting for a moderator before it is posted",
    "ready": "📮 posting",
    "delivered": "✅ posted",
    "failed": "❌ failed",
    "cancelled": "🚫 cancelled",
    "rejected": "🚫 rejected by a moderator",
}


def mapping_block(request: GenerationRequest) -> str:
    from bot.roles import mapping_lines

    lines = mapping_lines(request.references)
    return "\n".join(f"`{line}`" for line in lines)


def status_text(job: JobView, event: JobEvent | None = None, *, jump_url: str | None = None,
                credits: int | None = None) -> str:
    """The one status message of a job: who, what, how files were mapped, and where it is."""
    req = job.request
    head = f"**<@{job.user_id}>'s video** · {settings_line(req)}"
    prompt = f"> {clip(req.prompt, 400)}" if req.prompt else ""
    mapping = mapping_block(req)
    spent = credits if credits is not None else (job.credits_charged or job.credits_estimate)
    state = job.state.value
    line = STAGE_WORDS.get(state, state)
    if event is not None:
        kind = event.kind.value
        if kind in STAGE_WORDS:
            line = STAGE_WORDS[kind]
        if event.kind is EventKind.QUEUED and event.position is not None:
            line += f" — position {event.position}" if event.position else " — starting"
        if event.kind is EventKind.STARTED:
            line = STAGE_WORDS["generating"]
        if event.kind is EventKind.PROGRESS:
            line = STAGE_WORDS["generating"]
            if event.percent is not None:
                line += f" — {event.percent:.0f}%"
        if event.kind is EventKind.SUCCEEDED:
            line = STAGE_WORDS["ready"]
        if event.eta is not None and event.kind in (EventKind.QUEUED, EventKind.STARTED,
                                                    EventKind.PROGRESS):
            line += f", ready in about {duration_words(event.eta)}"
        if event.kind is EventKind.RETRYING:
            line = f"🔁 retrying — {event.reason or 'the gateway had a hiccup'}"
        elif event.reason and event.kind in (EventKind.FAILED, EventKind.CANCELLED,
                                             EventKind.REJECTED):
            line += f" — {clip(event.reason, 600)}"
    if jump_url:
        line = f"{STAGE_WORDS['delivered']} — {jump_url}"
    credit_word = "charged" if job.credits_charged else "reserved"
    if job.state.value in ("failed", "cancelled", "rejected") or (
        event is not None and event.kind in (EventKind.FAILED, EventKind.REJECTED)
    ):
        credit_word = "released" if not job.credits_charged else "charged"
    parts = [head, prompt, mapping, f"**Status:** {line}",
             f"-# {spent} credits {credit_word} · job `{job.id[:8]}`"]
    return clip("\n".join(p for p in parts if p), MAX_CONTENT)


def result_embed(job: JobView, result: JobResult, *,
                 too_large_for: int | None = None) -> discord.Embed:
    req = job.request
    embed = discord.Embed(description=clip(req.prompt, 1500) or "*(no prompt)*",
                          colour=discord.Colour.blurple())
    embed.add_field(name="Settings", value=clip(settings_line(req), MAX_EMBED_FIELD), inline=False)
    if req.references:
        embed.add_field(name="Inputs", value=clip(mapping_block(req), MAX_EMBED_FIELD),
                        inline=False)
    seed = result.seed if result.seed is not None else req.seed
    embed.add_field(name="Seed", value=str(seed) if seed is not None else "—")
    embed.add_field(name="Credits", value=str(result.credits or job.credits_estimate))
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    if too_large_for is not None:
        size_mb = result.video_path.stat().st_size / (1024 * 1024)
        urls = job.result_meta.get("video_urls") or job.result_meta.get("urls") or []
        public = next((u for u in urls if str(u).startswith("https://")), None)
        expires = job.result_meta.get("expires_at")
        if public:
            until = f" (link works until {timestamp(float(expires), 'f')})" if expires else ""
            where = f"[Download the video]({public}){until}"
        else:
            where = f"ask an admin for job `{job.id}`"
        embed.add_field(
            name="Too large to upload here",
            value=f"The video is {size_mb:.1f} MB and this server takes "
                  f"{too_large_for / (1024 * 1024):.0f} MB per file, even after compressing. "
                  f"{where}.",
            inline=False,
        )
    embed.set_footer(text=f"job {job.id}")
    return embed
