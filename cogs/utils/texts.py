"""What the bot says, as pure functions of core objects — testable without Discord."""

from __future__ import annotations

from datetime import UTC, datetime

import discord

from bot.engine import EventKind, JobEvent, JobResult, QuotaExceeded
from bot.errors import InvalidInput, Problem
from bot.guild import GuildLimits
from bot.i18n import DEFAULT, say, t
from bot.models import GenerationRequest
from bot.moderation import Forgotten
from bot.roles import mapping_lines
from bot.service.draft_rules import DRAFT_KEY, FINAL_OF_KEY
from bot.service.drafts import FinalQuote
from bot.service.privacy import LEDGER_DAYS, Holdings
from bot.service.votes import Ballot, Standing
from bot.store import EventRow, JobView
from bot.words import size

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


def problems_text(problems: list[Problem], locale: object = DEFAULT) -> str:
    head = t(locale, "errors.problems.head") + "\n"
    lines = [f"• **{say(p.subject, locale)}**: {say(p, locale) if p.key else p.message}"
             for p in problems]
    body = head + "\n".join(lines)
    return clip(body, MAX_CONTENT)


def refusal_text(exc: Exception, locale: object = DEFAULT) -> str:
    """A refusal as the person sees it, in their language (`locale`: the interaction's):
    every problem of a request, or the reason it can't be made (the services' sentences are
    already written for a person)."""
    if isinstance(exc, InvalidInput):
        return problems_text(exc.problems, locale)
    if isinstance(exc, QuotaExceeded):
        if exc.resets_at:
            return clip(t(locale, "errors.quota.not_enough_resets", reason=say(exc, locale),
                          when=utc(exc.resets_at)), MAX_CONTENT)
        return clip(t(locale, "errors.quota.not_enough", reason=say(exc, locale)), MAX_CONTENT)
    return clip(say(exc, locale), MAX_CONTENT)


def holdings_text(held: Holdings) -> str:
    if not held.jobs:
        head = "I store **no jobs** of yours (none made, or you deleted them)."
    else:
        head = (f"I store **{held.jobs}** job{'s' if held.jobs != 1 else ''} of yours "
                f"(all servers): **{held.with_prompt}** with your prompt and inputs, "
                f"**{held.files}** file{'s' if held.files != 1 else ''} on disk "
                f"({size(held.bytes)}: your inputs, results and last frames).")
        if held.unfinished:
            head += f" {held.unfinished} of them are not finished yet."
    if held.votes:
        head += (f"\nYou cast **{held.votes}** vote{'s' if held.votes != 1 else ''} in "
                 "events; `/my-data delete` deletes them too.")
    return (f"{head}\nThe credit ledger keeps your user id for up to {LEDGER_DAYS} days, as "
            "quotas are counted from it.\n`/my-data delete` removes your prompts and files; "
            "each job keeps an anonymous accounting row.")


def forgotten_text(done: Forgotten) -> str:
    return (f"Done. Deleted the prompts and input files of **{done.jobs}** "
            f"job{'s' if done.jobs != 1 else ''} and **{done.files}** "
            f"file{'s' if done.files != 1 else ''} from disk. Each job keeps an anonymous "
            "accounting row (model, length, credits). Credit ledger lines of the last "
            f"{LEDGER_DAYS} days keep your user id, as quotas are counted from them."
            + (f" The **{done.votes}** vote{'s' if done.votes != 1 else ''} you cast in events "
               f"{'was' if done.votes == 1 else 'were'} deleted." if done.votes else ""))


def limits_line(limits: GuildLimits) -> str:
    """The caps of a server, in one line."""
    return (f"This server runs up to {limits.running} videos at once and holds up to "
            f"{limits.queued} waiting; each member up to {limits.user_running} running and "
            f"{limits.user_queued} waiting.")


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
    if request.watermark:
        bits.append("watermark")
    if request.results > 1:
        bits.append(f"{request.results} videos")
    # The gateway options the bot chose for this request (Runware's, bot/engine/sizing.py).
    if request.output_quality is not None:
        bits.append(f"quality {request.output_quality}")
    if request.safety is not None and request.safety.value != "none":
        bits.append(f"safety check: {request.safety.value.replace('_', ' ')}")
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


def prompt_unreviewed(job: JobView) -> bool:
    """A prompt that waits for (or was refused) a moderator's approval."""
    if job.context.get("review") not in ("prompts", "both"):
        return False
    return job.state.value == "awaiting_approval" or (
        job.state.value in ("rejected", "cancelled") and job.started_at is None)


def mapping_block(request: GenerationRequest) -> str:
    lines = mapping_lines(request.references)
    return "\n".join(f"`{line}`" for line in lines)


def credits_words(job: JobView, spent: int, word: str) -> str:
    """"10 credits reserved", or for a set "4 × 10 = 40 credits reserved" (each video is
    charged), or what a set that came back short was charged and given back."""
    n = job.request.results
    if n <= 1:
        return f"{spent} credits {word}"
    each = job.credits_estimate // n
    charged = job.credits_charged
    if charged and charged < job.credits_estimate and each:
        return (f"{charged // each} of {n} videos came: {charged // each} × {each} = {charged} "
                f"credits charged, {job.credits_estimate - charged} returned")
    return f"{n} × {each} = {spent} credits {word}"


def fleet_line(job: JobView) -> str:
    """Which gateway took the job over, from which, and why (bot/engine/fleet.py)."""
    moves = [m for m in job.fleet.get("moves", [])
             if m.get("to") == job.provider and m.get("from") != m.get("to")]
    if not moves:
        return ""
    last = moves[-1]
    return f"-# 🔀 moved from {last['from']} to {last['to']}: {clip(str(last['cause']), 300)}"


def status_text(job: JobView, event: JobEvent | None = None, *, jump_url: str | None = None,
                credits: int | None = None) -> str:
    """The one status message of a job: who, what, how files were mapped, and where it is."""
    req = job.request
    head = f"**<@{job.user_id}>'s video** · {settings_line(req)}"
    prompt = f"> {clip(req.prompt, 400)}" if req.prompt else ""
    mapping = mapping_block(req)
    if prompt_unreviewed(job):
        # Nothing unreviewed appears in public: not the prompt, not the file names.
        prompt, mapping = "> *(prompt hidden until a moderator approves it)*", ""
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
    fixed = job.context.get("fixed")
    if fixed:  # settings the event chose, not the member (bot/service/options.py)
        head += f"\n-# Fixed by the event: {', '.join(str(k) for k in fixed)}"
    head += lineage_line(job)
    parts = [head, prompt, mapping, f"**Status:** {line}", fleet_line(job),
             f"-# {credits_words(job, spent, credit_word)} · job `{job.id[:8]}`"]
    return clip("\n".join(p for p in parts if p), MAX_CONTENT)


def lineage_line(job: JobView) -> str:
    """A draft says how to get its final; a final names its draft (bot/service/drafts.py)."""
    if job.context.get(DRAFT_KEY) is not None:
        same = ", same seed" if job.request.seed is not None else ""
        return f"\n-# Draft: the **Final** button on the video makes it bigger{same}."
    if job.context.get(FINAL_OF_KEY):
        return f"\n-# Final of draft `{str(job.context[FINAL_OF_KEY])[:8]}`"
    return ""


def final_quote_text(quote: FinalQuote) -> str:
    """The price of a final, shown privately before anything is charged."""
    req, draft = quote.request, quote.draft
    seed = (f"seed {req.seed}, the draft's" if quote.seed_kept
            else f"{req.provider} takes no seed, so this is a new take of the same prompt "
                 "and files, not the draft made bigger")
    was = draft.credits_charged or draft.credits_estimate
    videos = f" · {req.results} videos" if req.results > 1 else ""
    return clip(f"**Final of draft `{draft.id[:8]}`** · {req.resolution.value} · "
                f"{req.duration} s{videos} · {seed}\n"
                f"It costs **{quote.credits} credits** (the draft cost {was}). Nothing is "
                "charged until you press **Confirm**.", MAX_CONTENT)


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
    asked, came = req.results, len(result.video_paths)
    if asked > 1 and came < asked:
        returned = job.credits_estimate - (job.credits_charged or job.credits_estimate)
        embed.add_field(name="Set", value=f"{came} of {asked} videos came; {returned} credits "
                                          "were returned for the rest.", inline=False)
    if too_large_for is not None:
        urls = job.result_meta.get("video_urls") or job.result_meta.get("urls") or []
        public = [str(u) for u in urls if str(u).startswith("https://")]
        expires = job.result_meta.get("expires_at")
        if public:
            until = f" (links work until {timestamp(float(expires), 'f')})" if expires else ""
            names = (["the video"] if len(public) == 1
                     else [f"video {i}" for i in range(1, len(public) + 1)])
            where = " · ".join(f"[Download {name}]({url})"
                               for name, url in zip(names, public, strict=True)) + until
        else:
            where = f"ask an admin for job `{job.id}`"
        embed.add_field(
            name="Too large to upload here",
            value=f"The video is {size(result.video_path.stat().st_size)} and this server takes "
                  f"{size(too_large_for)} per file, even after compressing. "
                  f"{where}.",
            inline=False,
        )
    embed.set_footer(text=f"job {job.id}")
    return embed


#: What a person is told while the database is away (it restarts, the network dropped): their
#: request did nothing, and it will work again soon (bot/store/database.py `is_outage`).
OUTAGE_TEXT = ("The bot can't reach its database right now, so nothing was done; try again "
               "shortly.")


# ---- moderation ----------------------------------------------------------------------------
REVIEW_TITLES = {"approval": "🛡️ Prompt to review", "review": "🛡️ Video to review"}


def decision_line(job: JobView, kind: str) -> str:
    """What became of a job a card was about, as the moderators see it."""
    mod = f"<@{job.moderator_id}>" if job.moderator_id else "a moderator"
    state = job.state.value
    prompt_refused = state == "rejected" and job.started_at is None
    if kind == "approval" and job.started_at is not None:
        line = f"✅ Prompt approved by {mod}" if job.moderator_id else "✅ Prompt approved"
        if state == "rejected":
            line += f"; the video was then rejected: {clip(job.error_message or '', 300)}"
        elif state in ("failed", "cancelled", "delivered", "held"):
            line += f" · now {STAGE_WORDS.get(state, state)}"
        return line
    if state == "rejected" and (kind == "review" or prompt_refused):
        return f"🚫 Rejected by {mod}: {clip(job.error_message or 'no reason given', 600)}"
    if state == "cancelled":
        return "🚫 Cancelled by the requester before a decision"
    if state == "failed":
        return f"❌ Failed: {clip(job.error_message or '', 300)}"
    if job.moderator_id:
        return f"✅ Approved by {mod} · {STAGE_WORDS.get(state, state)}"
    return STAGE_WORDS.get(state, state)


def review_embed(job: JobView, kind: str, *, event_name: str | None = None,
                 note: str | None = None, decided: bool = False) -> discord.Embed:
    """A moderators' card: everything needed to decide without opening anything else."""
    req = job.request
    colour = discord.Colour.orange()
    if decided:
        line = decision_line(job, kind)
        colour = (discord.Colour.red() if line.startswith(("🚫", "❌"))
                  else discord.Colour.green())
    embed = discord.Embed(title=REVIEW_TITLES[kind], colour=colour,
                          description=clip(req.prompt, 3000) or "*(no prompt)*")
    embed.add_field(name="Requester", value=f"<@{job.user_id}> (`{job.user_id}`)")
    embed.add_field(name="Where", value=f"<#{job.channel_id}>")
    if event_name:
        embed.add_field(name="Event", value=clip(event_name, 200))
    if req.references:
        embed.add_field(name="Inputs", value=clip(mapping_block(req), MAX_EMBED_FIELD),
                        inline=False)
    embed.add_field(name="Settings", value=clip(settings_line(req), MAX_EMBED_FIELD),
                    inline=False)
    embed.add_field(name="Credits", value=f"{job.credits_charged or job.credits_estimate}")
    if note:
        embed.add_field(name="Note", value=clip(note, MAX_EMBED_FIELD), inline=False)
    if decided:
        embed.add_field(name="Decision", value=clip(decision_line(job, kind), MAX_EMBED_FIELD),
                        inline=False)
    embed.set_footer(text=f"job {job.id}")
    return embed


AUDIT_EMOJI = {"delivered": "✅", "failed": "❌", "cancelled": "🚫", "rejected": "⛔"}


def audit_text(job: JobView, *, jump_url: str | None = None,
               event_name: str | None = None) -> str:
    """One audit-log entry per finished job: who, where, what, decision, result, credits."""
    req = job.request
    state = job.state.value
    where = f"<#{job.channel_id}>" + (f" · event **{clip(event_name, 80)}**" if event_name else "")
    head = (f"{AUDIT_EMOJI.get(state, '•')} **{state}** · <@{job.user_id}> in {where}"
            f" · job `{job.id[:8]}`")
    prompt = ("> *(deleted by the requester)*" if job.forgotten
              else f"> {clip(req.prompt, 300)}" if req.prompt else "> *(no prompt)*")
    kinds: dict[str, int] = {}
    for ref in req.references:
        kinds[ref.kind.value] = kinds.get(ref.kind.value, 0) + 1
    inputs = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in kinds.items()) or "no files"
    what = f"inputs: {inputs} · {settings_line(req)}"
    decision = ""
    if job.moderator_id:
        verb = "rejected" if state == "rejected" else "approved"
        decision = f"{verb} by <@{job.moderator_id}>"
        if state == "rejected" and job.error_message:
            decision += f": {clip(job.error_message, 300)}"
    outcome = (f"[the video]({jump_url})" if jump_url
               else "" if decision else clip(job.error_message or "", 300))
    credits = (f"{job.credits_charged} credits charged" if job.credits_charged
               else f"{job.credits_estimate} credits released")
    tail = " · ".join(p for p in (decision, outcome, credits) if p)
    return clip("\n".join((head, prompt, what, tail)), MAX_CONTENT)


# ---- event voting (bot/service/votes.py) -----------------------------------------------------
#: Winners named one per line in a summary; a tie wider than this is summed up in one line.
MAX_WINNER_LINES = 10


def vote_label(votes: int) -> str:
    """The vote button's label: what it does until someone votes, then the count."""
    return "▲ Vote" if votes == 0 else f"▲ {votes}"


def votes_words(votes: int) -> str:
    return f"**{votes}** vote{'' if votes == 1 else 's'}"


def voted_text(ballot: Ballot) -> str:
    if not ballot.changed:
        return (f"You had voted for this entry already; a vote counts once. It has "
                f"{votes_words(ballot.votes)}.")
    return (f"Your vote is counted: this entry has {votes_words(ballot.votes)}. You may vote "
            f"for other entries too, and take this vote back until **{ballot.event.name}** "
            f"ends.")


def withdrawn_text(ballot: Ballot) -> str:
    if not ballot.changed:
        return (f"You have no vote on this entry to take back; it has "
                f"{votes_words(ballot.votes)}.")
    return (f"Your vote is taken back: this entry has {votes_words(ballot.votes)}. Press "
            "▲ on the entry to vote again.")


def place_word(standing: Standing) -> str:
    """`1.`, or `=2.` for a place shared by a tie."""
    return f"{'=' if standing.tied else ''}{standing.rank}."


def standing_line(event: EventRow, standing: Standing) -> str:
    """`=2. <@author> — **3** votes (tied) · [entry](link)`."""
    entry = standing.entry
    where = event.thread_id or entry.channel_id
    link = (f" · [entry](https://discord.com/channels/{event.guild_id}/{where}/"
            f"{entry.message_id})" if entry.message_id else "")
    tie = " (tied)" if standing.tied else ""
    return (f"{place_word(standing)} <@{entry.author_id}> — {votes_words(entry.votes)}{tie}"
            f"{link}")


def standings_block(event: EventRow, top: list[Standing]) -> str:
    """The leading entries for `/event status`, or how to vote when nobody has yet."""
    if not top:
        return "No votes yet: press ▲ on the entries you like in the gallery."
    return "Top entries:\n" + "\n".join(standing_line(event, s) for s in top)


def winners_block(event: EventRow, winners: list[Standing]) -> str:
    """The summary's winners: every entry placed within the top places, ties said as ties."""
    if not winners:
        return "• Votes: no entry got a vote, so there is no winner."
    tied = any(s.tied for s in winners)
    note = " Entries with equal votes share their place." if tied else ""
    lines = [f"🏆 **Winners** by members' votes:{note}"]
    lines += [standing_line(event, s) for s in winners[:MAX_WINNER_LINES]]
    if len(winners) > MAX_WINNER_LINES:  # a wide tie: the summary must stay one message
        last = winners[MAX_WINNER_LINES]
        lines.append(f"…and {len(winners) - MAX_WINNER_LINES} more entries tied at "
                     f"{place_word(last)[:-1]} with {votes_words(last.votes)} each.")
    return "\n".join(lines)


def purchased_line(credits: int) -> str:
    """/quota's purchased credits (spent after the free quota: bot/service/purchased.py)."""
    return (f"• Purchased credits: **{credits}** left (spent when your free credits run out; "
            "they never reset)")
