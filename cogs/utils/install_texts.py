"""What a person reads about jobs asked through the app installed to them (user installs:
cogs/utils/installs.py, cogs/installs.py), in one module so the strings move together into the
language catalog."""

from __future__ import annotations

from bot.store import JobView

from .texts import STAGE_WORDS, clip, timestamp

#: How `/my-videos` names where a finished video went (the job's `delivery_ref` prefix).
WHERE = {"followup": "sent here, under the command", "dm": "sent to your DMs"}


def personal_hint() -> str:
    """Under a personal job's status while it runs: where the video goes if it takes long."""
    return ("-# If this takes longer than 15 minutes, the video comes to your DMs; if your DMs "
            "are closed, find it with `/my-videos`.")


def fetch_it() -> str:
    """A personal job whose video could not be shown here or in DMs."""
    return "✅ ready — fetch your video with `/my-videos`."


def no_videos() -> str:
    return "You have no videos yet: make one with `/video`."


def no_more(page: int) -> str:
    return f"There is no page {page}: your videos fit on fewer pages. Try `/my-videos page:1`."


def page_head(page: int, more: bool) -> str:
    tail = f" · next: `/my-videos page:{page + 1}`" if more else ""
    return f"**Your recent videos** (page {page}){tail}"


def job_line(job: JobView, link: str | None) -> str:
    """One job in `/my-videos`: when, its state, the prompt clipped, where its video is."""
    state = STAGE_WORDS.get(job.state.value, job.state.value)
    prompt = clip(job.request.prompt.replace("\n", " "), 60) or "(no prompt)"
    line = f"`{job.id[:8]}` {timestamp(job.created_at)} · {state} · {prompt}"
    if link:
        line += f" · {link}"
    return line


def where_line(ref: str | None, jump: str | None) -> str | None:
    """Where a delivered job's video is: a link to the message, or how to get it here."""
    if jump:
        return jump
    kind = (ref or "").split(":", 1)[0]
    if kind in WHERE:
        return WHERE[kind]
    if kind in ("my-videos", "unsure"):
        return "not delivered anywhere: `/my-videos job:` + its id attaches it"
    return None


def unknown_job(prefix: str) -> str:
    return (f"No video of yours starts with `{clip(prefix, 20)}`. `/my-videos` lists your "
            "videos with their ids.")


def not_ready(job: JobView) -> str:
    state = STAGE_WORDS.get(job.state.value, job.state.value)
    return f"Job `{job.id[:8]}` has no video to attach ({state})."


def files_gone(job: JobView) -> str:
    return (f"The files of job `{job.id[:8]}` are no longer kept here (old videos are cleaned "
            "up). Make it again with `/video`.")


def attached(job: JobView) -> str:
    return f"Your video from job `{job.id[:8]}`: {clip(job.request.prompt, 200)}"


def too_large(job: JobView, size: str, limit: str) -> str:
    return (f"The video of job `{job.id[:8]}` is {size}, over the {limit} Discord allows here, "
            "so it can't be attached. Try again in a DM with the app.")
