"""What a person reads about jobs asked through the app installed to them (user installs:
cogs/utils/installs.py, cogs/installs.py), from the language catalog (bot/i18n, keys
`installs.*` in bot/i18n/locales/<language>/installs.toml), in the reader's language:
`locale` is the interaction's (or, for a job's status, the one its command was asked in)."""

from __future__ import annotations

from bot.i18n import t
from bot.store import JobView

from .texts import clip, timestamp

#: `delivery_ref` kinds of a personal job (cogs/utils/installs.py) and their words.
WHERE = {"followup": "installs.where.followup", "dm": "installs.where.dm"}
NOWHERE = {"my-videos": "installs.where.nowhere", "unsure": "installs.where.unsure"}


def personal_hint(locale: object) -> str:
    """Under a personal job's status while it runs: where the video goes if it takes long."""
    return t(locale, "installs.status.hint")


def fetch_it(locale: object, *, unsure: bool = False) -> str:
    """A personal job whose video could be shown neither here nor in DMs (`unsure`: it may
    have been shown, before a restart, and is not sent again)."""
    return t(locale, "installs.status.unsure" if unsure else "installs.status.fetch_it")


def state_words(locale: object, job: JobView) -> str:
    return t(locale, f"installs.state.{job.state.value}")


def no_videos(locale: object, page: int) -> str:
    if page == 1:
        return t(locale, "installs.my_videos.none")
    return t(locale, "installs.my_videos.no_page", page=page)


def page_head(locale: object, page: int, more: bool) -> str:
    head = t(locale, "installs.my_videos.head", page=page)
    return f"{head} · {t(locale, 'installs.my_videos.next', page=page + 1)}" if more else head


def job_line(locale: object, job: JobView, where: str | None) -> str:
    """One job in `/my-videos`: its id, when, its state, the prompt clipped, where it went."""
    prompt = clip(job.request.prompt.replace("\n", " "), 60) or t(
        locale, "installs.my_videos.no_prompt")
    line = f"`{job.id[:8]}` {timestamp(job.created_at)} · {state_words(locale, job)} · {prompt}"
    return f"{line} · {where}" if where else line


def where_line(locale: object, job: JobView, jump: str | None) -> str | None:
    """Where a finished job's video is: a link to its message, or how to get it."""
    if jump:
        return jump
    kind = (job.delivery_ref or "").split(":", 1)[0]
    if kind in WHERE:
        return t(locale, WHERE[kind])
    if kind in NOWHERE:
        return t(locale, NOWHERE[kind], job=job.id[:8])
    return None


def unknown_job(locale: object, prefix: str) -> str:
    return t(locale, "installs.my_videos.unknown", prefix=clip(prefix, 20))


def not_ready(locale: object, job: JobView) -> str:
    return t(locale, "installs.my_videos.not_ready", job=job.id[:8],
             state=state_words(locale, job))


def files_gone(locale: object, job: JobView) -> str:
    return t(locale, "installs.my_videos.gone", job=job.id[:8])


def attached(locale: object, job: JobView) -> str:
    return t(locale, "installs.my_videos.attached", job=job.id[:8],
             prompt=clip(job.request.prompt, 200))


def too_large(locale: object, job: JobView, size: str, limit: str) -> str:
    return t(locale, "installs.my_videos.too_large", job=job.id[:8], size=size, limit=limit)
