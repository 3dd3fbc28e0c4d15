"""What the components-v2 cards say (cogs/utils/layout.py), as pure functions of core objects.

Kept apart from cogs/utils/texts.py, which is near its size limit; the card reuses its lines
(settings, credits, status) so a card and its embed fallback say the same things.
"""

from __future__ import annotations

from bot.engine import EventKind, JobEvent, JobResult
from bot.i18n import DEFAULT, t
from bot.store import JobView

from .texts import credits_words, lineage_line, timestamp

#: Discord's limit on the text of all text displays of one message together.
MAX_CARD_TEXT = 4000
#: The most of a prompt a result card shows (the rest is on the job, `/my-videos`).
MAX_CARD_PROMPT = 1500
BAR_CELLS = 12


def cards_setting_text(style: str, spoiler_prompts: bool, locale: object = DEFAULT) -> str:
    """`style` is cards, embeds or default."""
    hidden = "cards.setting.spoiler" if spoiler_prompts else "cards.setting.open"
    return t(locale, f"cards.setting.{style}") + " " + t(locale, hidden)


def progress_bar(percent: float | None) -> str:
    """`▰▰▰▱▱▱ 50%` — a text bar, as cards have no progress component."""
    if percent is None:
        return ""
    p = max(0.0, min(100.0, percent))
    full = round(p / 100 * BAR_CELLS)
    return "▰" * full + "▱" * (BAR_CELLS - full) + f" {p:.0f}%"


def status_progress(job: JobView, event: JobEvent | None) -> float | None:
    """How far the job is, as far as we know: None while it waits or when it went wrong."""
    kind = event.kind if event is not None else None
    if kind in (EventKind.FAILED, EventKind.CANCELLED, EventKind.REJECTED):
        return None
    if kind in (EventKind.SUCCEEDED, EventKind.DELIVERED, EventKind.HELD) or (
            kind is None and job.state.value in ("delivered", "held", "ready")):
        return 100.0
    if kind is EventKind.PROGRESS and event is not None and event.percent is not None:
        return event.percent
    if kind in (EventKind.STARTED, EventKind.PROGRESS) or job.state.value in (
            "submitting", "generating", "downloading"):
        return 0.0
    return None


def result_header(job: JobView, locale: object = DEFAULT) -> str:
    return "### " + t(locale, "cards.result.header", user=job.user_id) + lineage_line(job, locale)


def result_details(job: JobView, result: JobResult, settings: str,
                   locale: object = DEFAULT) -> str:
    """Settings, seed, credits and gateway, under the video."""
    req = job.request
    seed = result.seed if result.seed is not None else req.seed
    spent = result.credits or job.credits_charged or job.credits_estimate
    lines = [t(locale, "cards.result.settings", settings=settings),
             t(locale, "cards.result.facts", seed=seed if seed is not None else "—",
               credits=credits_words(job, spent, "charged", locale), gateway=job.provider)]
    asked, came = req.results, len(result.video_paths)
    if asked > 1 and came < asked:
        returned = job.credits_estimate - (job.credits_charged or job.credits_estimate)
        lines.append(t(locale, "cards.result.set", set=t(
            locale, "replies.result.set_short", came=came, asked=asked, returned=returned)))
    return "\n".join(lines)


def hosted_note(job: JobView, size_words: str, limit_words: str, links: list[str],
                expires: float | None, locale: object = DEFAULT) -> str:
    """Why the video is a link rather than a file, and until when the link works."""
    until = (" " + t(locale, "cards.hosted.until", when=timestamp(expires, "f"))
             if expires and links else "")
    where = " " + (t(locale, "cards.hosted.from_link") if links
                   else t(locale, "cards.hosted.ask_admin", job=job.id))
    return t(locale, "cards.hosted.too_large", size=size_words, limit=limit_words) + where + until


def job_footer(job: JobView, locale: object = DEFAULT) -> str:
    return "-# " + t(locale, "cards.result.footer", job=job.id)
