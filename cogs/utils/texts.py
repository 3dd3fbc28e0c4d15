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


def duration_words(seconds: float | None, locale: object = DEFAULT) -> str:
    if seconds is None:
        return t(locale, "replies.duration.unknown")
    seconds = max(0, round(seconds))
    if seconds < 60:
        return t(locale, "replies.duration.seconds", seconds=seconds)
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return (t(locale, "replies.duration.minutes_seconds", minutes=minutes,
                  seconds=f"{secs:02d}") if secs
                else t(locale, "replies.duration.minutes", minutes=minutes))
    hours, minutes = divmod(minutes, 60)
    return t(locale, "replies.duration.hours", hours=hours, minutes=f"{minutes:02d}")


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


def holdings_text(held: Holdings, locale: object = DEFAULT) -> str:
    if not held.jobs:
        head = t(locale, "replies.holdings.none")
    else:
        files = t(locale, "replies.holdings.files", count=held.files)
        head = t(locale, "replies.holdings.jobs", count=held.jobs, with_prompt=held.with_prompt,
                 files=files, size=size(held.bytes))
        if held.unfinished:
            head += " " + t(locale, "replies.holdings.unfinished", count=held.unfinished)
    if held.votes:
        head += "\n" + t(locale, "replies.holdings.votes", count=held.votes)
    return f"{head}\n" + t(locale, "replies.holdings.ledger", days=LEDGER_DAYS)


def forgotten_text(done: Forgotten, locale: object = DEFAULT) -> str:
    text = t(locale, "replies.forgotten.done", days=LEDGER_DAYS,
             jobs=t(locale, "replies.forgotten.jobs", count=done.jobs),
             files=t(locale, "replies.holdings.files", count=done.files))
    if done.votes:
        text += " " + t(locale, "replies.forgotten.votes", count=done.votes)
    return text


def limits_line(limits: GuildLimits, locale: object = DEFAULT) -> str:
    """The caps of a server, in one line."""
    return t(locale, "replies.limits", running=limits.running, queued=limits.queued,
             user_running=limits.user_running, user_queued=limits.user_queued)


def settings_line(request: GenerationRequest, locale: object = DEFAULT) -> str:
    bits = [
        t(locale, f"replies.mode.{request.mode.value}"),
        t(locale, "replies.duration.seconds", seconds=request.duration),
        request.resolution.value,
        request.ratio.value,
        t(locale, "replies.settings.audio_on" if request.audio else "replies.settings.no_audio"),
    ]
    if request.seed is not None:
        bits.append(t(locale, "replies.settings.seed", seed=request.seed))
    if request.camera_fixed:
        bits.append(t(locale, "replies.settings.camera_fixed"))
    if request.web_search:
        bits.append(t(locale, "replies.settings.web_search"))
    if request.watermark:
        bits.append(t(locale, "replies.settings.watermark"))
    if request.results > 1:
        bits.append(t(locale, "replies.settings.videos", count=request.results))
    # The gateway options the bot chose for this request (Runware's, bot/engine/sizing.py).
    if request.output_quality is not None:
        bits.append(t(locale, "replies.settings.quality", quality=request.output_quality))
    if request.safety is not None and request.safety.value != "none":
        bits.append(t(locale, "replies.settings.safety",
                      check=t(locale, f"replies.safety.{request.safety.value}")))
    model = f"{request.provider}" + (f" · {request.model}" if request.model else "")
    bits.append(model)
    return " · ".join(bits)


#: A job's states and events that have words of their own (`replies.stage.<name>`).
STAGES = frozenset({"awaiting_approval", "queued", "submitting", "generating", "downloading",
                    "held", "ready", "delivered", "failed", "cancelled", "rejected"})


def stage_words(stage: str, locale: object = DEFAULT) -> str:
    """`🕒 queued` and the like; an unknown stage as it is."""
    return t(locale, f"replies.stage.{stage}") if stage in STAGES else stage


def prompt_unreviewed(job: JobView) -> bool:
    """A prompt that waits for (or was refused) a moderator's approval."""
    if job.context.get("review") not in ("prompts", "both"):
        return False
    return job.state.value == "awaiting_approval" or (
        job.state.value in ("rejected", "cancelled") and job.started_at is None)


def mapping_block(request: GenerationRequest) -> str:
    lines = mapping_lines(request.references)
    return "\n".join(f"`{line}`" for line in lines)


def credits_words(job: JobView, spent: int, word: str, locale: object = DEFAULT) -> str:
    """"10 credits reserved", or for a set "4 × 10 = 40 credits reserved" (each video is
    charged), or what a set that came back short was charged and given back. `word` is
    charged, reserved or released."""
    n = job.request.results
    if n <= 1:
        return t(locale, f"replies.credits.{word}", spent=spent)
    each = job.credits_estimate // n
    charged = job.credits_charged
    if charged and charged < job.credits_estimate and each:
        return t(locale, "replies.credits_short", came=charged // each, n=n, each=each,
                 charged=charged, returned=job.credits_estimate - charged)
    return t(locale, f"replies.credits_set.{word}", n=n, each=each, spent=spent)


def fleet_line(job: JobView, locale: object = DEFAULT) -> str:
    """Which gateway took the job over, from which, and why (bot/engine/fleet.py)."""
    moves = [m for m in job.fleet.get("moves", [])
             if m.get("to") == job.provider and m.get("from") != m.get("to")]
    if not moves:
        return ""
    last = moves[-1]
    return t(locale, "replies.status.moved", source=last["from"], target=last["to"],
             cause=clip(str(last["cause"]), 300))


def prompt_block(prompt: str, limit: int, *, spoiler: bool, locale: object = DEFAULT) -> str:
    """The prompt, clipped to `limit`; behind a spoiler when the server asks."""
    if not prompt:
        return t(locale, "replies.result.no_prompt")
    text = clip(prompt.replace("||", "| |") if spoiler else prompt, max(20, limit - 4))
    return f"||{text}||" if spoiler else text


def status_text(job: JobView, event: JobEvent | None = None, *, jump_url: str | None = None,
                credits: int | None = None, locale: object = DEFAULT,
                spoiler: bool = False) -> str:
    """The one status message of a job: who, what, how files were mapped, and where it is.
    Public: `locale` is the server's (the job context's `guild_locale`); `spoiler` hides the
    prompt as the server's result cards do (`/seedance-admin cards`)."""
    req = job.request
    head = t(locale, "replies.status.head", user=job.user_id,
             settings=settings_line(req, locale))
    prompt = f"> {prompt_block(req.prompt, 400, spoiler=spoiler)}" if req.prompt else ""
    mapping = mapping_block(req)
    if prompt_unreviewed(job):
        # Nothing unreviewed appears in public: not the prompt, not the file names.
        prompt, mapping = t(locale, "replies.status.prompt_hidden"), ""
    spent = credits if credits is not None else (job.credits_charged or job.credits_estimate)
    state = job.state.value
    line = stage_words(state, locale)
    if event is not None:
        kind = event.kind.value
        if kind in STAGES:
            line = stage_words(kind, locale)
        if event.kind is EventKind.QUEUED and event.position is not None:
            line += " — " + (t(locale, "replies.status.position", position=event.position)
                             if event.position else t(locale, "replies.status.starting"))
        if event.kind is EventKind.STARTED:
            line = stage_words("generating", locale)
        if event.kind is EventKind.PROGRESS:
            line = stage_words("generating", locale)
            if event.percent is not None:
                line += f" — {event.percent:.0f}%"
        if event.kind is EventKind.SUCCEEDED:
            line = stage_words("ready", locale)
        if event.eta is not None and event.kind in (EventKind.QUEUED, EventKind.STARTED,
                                                    EventKind.PROGRESS):
            line += ", " + t(locale, "replies.status.ready_in",
                             duration=duration_words(event.eta, locale))
        if event.kind is EventKind.RETRYING:
            line = t(locale, "replies.status.retrying",
                     reason=say(event.reason, locale) if event.reason
                     else t(locale, "replies.status.hiccup"))
        elif event.reason and event.kind in (EventKind.FAILED, EventKind.CANCELLED,
                                             EventKind.REJECTED):
            line += f" — {clip(say(event.reason, locale), 600)}"
    if jump_url:
        line = f"{stage_words('delivered', locale)} — {jump_url}"
    credit_word = "charged" if job.credits_charged else "reserved"
    if job.state.value in ("failed", "cancelled", "rejected") or (
        event is not None and event.kind in (EventKind.FAILED, EventKind.REJECTED)
    ):
        credit_word = "released" if not job.credits_charged else "charged"
    fixed = job.context.get("fixed")
    if fixed:  # settings the event chose, not the member (bot/service/options.py)
        head += "\n" + t(locale, "replies.status.fixed", names=", ".join(str(k) for k in fixed))
    head += lineage_line(job, locale)
    parts = [head, prompt, mapping, t(locale, "replies.status.line", line=line),
             fleet_line(job, locale),
             t(locale, "replies.status.footer", credits=credits_words(job, spent, credit_word,
                                                                       locale), job=job.id[:8])]
    return clip("\n".join(p for p in parts if p), MAX_CONTENT)


def lineage_line(job: JobView, locale: object = DEFAULT) -> str:
    """A draft says how to get its final; a final names its draft (bot/service/drafts.py)."""
    if job.context.get(DRAFT_KEY) is not None:
        if job.request.seed is not None:
            return "\n" + t(locale, "replies.lineage.draft_same_seed")
        return "\n" + t(locale, "replies.lineage.draft")
    if job.context.get(FINAL_OF_KEY):
        return "\n" + t(locale, "replies.lineage.final", draft=str(job.context[FINAL_OF_KEY])[:8])
    return ""


def final_quote_text(quote: FinalQuote, locale: object = DEFAULT) -> str:
    """The price of a final, shown privately before anything is charged."""
    req, draft = quote.request, quote.draft
    seed = (t(locale, "replies.final.seed_kept", seed=req.seed) if quote.seed_kept
            else t(locale, "replies.final.seed_new", provider=req.provider))
    was = draft.credits_charged or draft.credits_estimate
    videos = (" · " + t(locale, "replies.settings.videos", count=req.results)
              if req.results > 1 else "")
    return clip(t(locale, "replies.final.head", draft=draft.id[:8],
                  resolution=req.resolution.value,
                  duration=t(locale, "replies.duration.seconds", seconds=req.duration),
                  videos=videos, seed=seed) + "\n"
                + t(locale, "replies.final.price", credits=quote.credits, was=was), MAX_CONTENT)


def result_embed(job: JobView, result: JobResult, *, too_large_for: int | None = None,
                 locale: object = DEFAULT) -> discord.Embed:
    """The finished video as an embed (public: the server's `locale`)."""
    req = job.request
    embed = discord.Embed(description=clip(req.prompt, 1500)
                          or t(locale, "replies.result.no_prompt"),
                          colour=discord.Colour.blurple())
    embed.add_field(name=t(locale, "replies.result.settings"),
                    value=clip(settings_line(req, locale), MAX_EMBED_FIELD), inline=False)
    if req.references:
        embed.add_field(name=t(locale, "replies.result.inputs"),
                        value=clip(mapping_block(req), MAX_EMBED_FIELD), inline=False)
    seed = result.seed if result.seed is not None else req.seed
    embed.add_field(name=t(locale, "replies.result.seed"),
                    value=str(seed) if seed is not None else "—")
    embed.add_field(name=t(locale, "replies.result.credits"),
                    value=str(result.credits or job.credits_estimate))
    embed.add_field(name=t(locale, "replies.result.requested_by"), value=f"<@{job.user_id}>")
    asked, came = req.results, len(result.video_paths)
    if asked > 1 and came < asked:
        returned = job.credits_estimate - (job.credits_charged or job.credits_estimate)
        embed.add_field(name=t(locale, "replies.result.set"),
                        value=t(locale, "replies.result.set_short", came=came, asked=asked,
                                returned=returned), inline=False)
    if too_large_for is not None:
        urls = job.result_meta.get("video_urls") or job.result_meta.get("urls") or []
        public = [str(u) for u in urls if str(u).startswith("https://")]
        expires = job.result_meta.get("expires_at")
        if public:
            until = (" " + t(locale, "replies.result.links_until",
                             when=timestamp(float(expires), "f")) if expires else "")
            names = ([t(locale, "replies.result.the_video")] if len(public) == 1
                     else [t(locale, "replies.result.video_n", n=i)
                           for i in range(1, len(public) + 1)])
            where = " · ".join(t(locale, "replies.result.download", name=name, url=url)
                               for name, url in zip(names, public, strict=True)) + until
        else:
            where = t(locale, "replies.result.ask_admin", job=job.id)
        embed.add_field(
            name=t(locale, "replies.result.too_large"),
            value=t(locale, "replies.result.too_large_because",
                    size=size(result.video_path.stat().st_size), limit=size(too_large_for),
                    where=where),
            inline=False,
        )
    embed.set_footer(text=t(locale, "replies.result.footer", job=job.id))
    return embed


def outage_text(locale: object = DEFAULT) -> str:
    """What a person is told while the database is away (it restarts, the network dropped):
    their request did nothing, and it will work again soon (bot/store/database.py
    `is_outage`)."""
    return t(locale, "replies.outage")


#: `outage_text` in English, for callers that have no reader's locale.
OUTAGE_TEXT = outage_text()


# ---- moderation (cards.toml: the moderators' cards are public in their channel) -------------
def review_title(kind: str, locale: object = DEFAULT) -> str:
    return t(locale, f"cards.review.title.{kind}")


def decision_line(job: JobView, kind: str, locale: object = DEFAULT) -> str:
    """What became of a job a card was about, as the moderators see it."""
    mod = f"<@{job.moderator_id}>" if job.moderator_id else t(locale, "cards.decision.a_moderator")
    state = job.state.value
    prompt_refused = state == "rejected" and job.started_at is None
    if kind == "approval" and job.started_at is not None:
        line = (t(locale, "cards.decision.prompt_approved_by", mod=mod) if job.moderator_id
                else t(locale, "cards.decision.prompt_approved"))
        if state == "rejected":
            line += t(locale, "cards.decision.then_rejected",
                      reason=clip(job.error_message or "", 300))
        elif state in ("failed", "cancelled", "delivered", "held"):
            line += " · " + t(locale, "cards.decision.now", stage=stage_words(state, locale))
        return line
    if state == "rejected" and (kind == "review" or prompt_refused):
        reason = job.error_message or t(locale, "cards.decision.no_reason")
        return t(locale, "cards.decision.rejected_by", mod=mod, reason=clip(reason, 600))
    if state == "cancelled":
        return t(locale, "cards.decision.cancelled")
    if state == "failed":
        return t(locale, "cards.decision.failed", reason=clip(job.error_message or "", 300))
    if job.moderator_id:
        return t(locale, "cards.decision.approved_by", mod=mod, stage=stage_words(state, locale))
    return stage_words(state, locale)


def review_embed(job: JobView, kind: str, *, event_name: str | None = None,
                 note: str | None = None, decided: bool = False,
                 locale: object = DEFAULT) -> discord.Embed:
    """A moderators' card: everything needed to decide without opening anything else."""
    req = job.request
    colour = discord.Colour.orange()
    if decided:
        line = decision_line(job, kind, locale)
        colour = (discord.Colour.red() if line.startswith(("🚫", "❌"))
                  else discord.Colour.green())
    embed = discord.Embed(title=review_title(kind, locale), colour=colour,
                          description=clip(req.prompt, 3000)
                          or t(locale, "replies.result.no_prompt"))
    embed.add_field(name=t(locale, "cards.review.requester"),
                    value=f"<@{job.user_id}> (`{job.user_id}`)")
    embed.add_field(name=t(locale, "cards.review.where"), value=f"<#{job.channel_id}>")
    if event_name:
        embed.add_field(name=t(locale, "cards.review.event"), value=clip(event_name, 200))
    if req.references:
        embed.add_field(name=t(locale, "replies.result.inputs"),
                        value=clip(mapping_block(req), MAX_EMBED_FIELD), inline=False)
    embed.add_field(name=t(locale, "replies.result.settings"),
                    value=clip(settings_line(req, locale), MAX_EMBED_FIELD), inline=False)
    embed.add_field(name=t(locale, "replies.result.credits"),
                    value=f"{job.credits_charged or job.credits_estimate}")
    if note:
        embed.add_field(name=t(locale, "cards.review.note"), value=clip(note, MAX_EMBED_FIELD),
                        inline=False)
    if decided:
        embed.add_field(name=t(locale, "cards.review.decision"),
                        value=clip(decision_line(job, kind, locale), MAX_EMBED_FIELD),
                        inline=False)
    embed.set_footer(text=t(locale, "replies.result.footer", job=job.id))
    return embed


AUDIT_EMOJI = {"delivered": "✅", "failed": "❌", "cancelled": "🚫", "rejected": "⛔"}


def audit_text(job: JobView, *, jump_url: str | None = None,
               event_name: str | None = None, locale: object = DEFAULT) -> str:
    """One audit-log entry per finished job: who, where, what, decision, result, credits."""
    req = job.request
    state = job.state.value
    where = f"<#{job.channel_id}>" + (
        " · " + t(locale, "cards.audit.event", name=clip(event_name, 80)) if event_name else "")
    said = t(locale, f"cards.audit.state.{state}") if state in AUDIT_EMOJI else state
    head = (f"{AUDIT_EMOJI.get(state, '•')} "
            + t(locale, "cards.audit.head", state=said, user=job.user_id, where=where,
                job=job.id[:8]))
    prompt = (t(locale, "cards.audit.forgotten") if job.forgotten
              else f"> {clip(req.prompt, 300)}" if req.prompt
              else "> " + t(locale, "replies.result.no_prompt"))
    kinds: dict[str, int] = {}
    for ref in req.references:
        kinds[ref.kind.value] = kinds.get(ref.kind.value, 0) + 1
    inputs = (", ".join(t(locale, f"cards.audit.inputs.{k}", count=n) for k, n in kinds.items())
              or t(locale, "cards.audit.no_files"))
    what = t(locale, "cards.audit.what", inputs=inputs, settings=settings_line(req, locale))
    decision = ""
    if job.moderator_id:
        decision = t(locale, "cards.audit.rejected_by" if state == "rejected"
                     else "cards.audit.approved_by", mod=job.moderator_id)
        if state == "rejected" and job.error_message:
            decision += f": {clip(job.error_message, 300)}"
    outcome = (t(locale, "cards.audit.the_video", url=jump_url) if jump_url
               else "" if decision else clip(job.error_message or "", 300))
    credits = (t(locale, "replies.credits.charged", spent=job.credits_charged)
               if job.credits_charged
               else t(locale, "replies.credits.released", spent=job.credits_estimate))
    tail = " · ".join(p for p in (decision, outcome, credits) if p)
    return clip("\n".join((head, prompt, what, tail)), MAX_CONTENT)


# ---- event voting (bot/service/votes.py) -----------------------------------------------------
#: Winners named one per line in a summary; a tie wider than this is summed up in one line.
MAX_WINNER_LINES = 10


def vote_label(votes: int, locale: object = DEFAULT) -> str:
    """The vote button's label: what it does until someone votes, then the count."""
    return t(locale, "cards.buttons.vote") if votes == 0 else f"▲ {votes}"


def votes_words(votes: int, locale: object = DEFAULT) -> str:
    return t(locale, "replies.votes.count", count=votes)


def voted_text(ballot: Ballot, locale: object = DEFAULT) -> str:
    votes = votes_words(ballot.votes, locale)
    if not ballot.changed:
        return t(locale, "replies.votes.already", votes=votes)
    return t(locale, "replies.votes.counted", votes=votes, event=ballot.event.name)


def withdrawn_text(ballot: Ballot, locale: object = DEFAULT) -> str:
    votes = votes_words(ballot.votes, locale)
    if not ballot.changed:
        return t(locale, "replies.votes.none_to_take", votes=votes)
    return t(locale, "replies.votes.taken_back", votes=votes)


def place_word(standing: Standing) -> str:
    """`1.`, or `=2.` for a place shared by a tie."""
    return f"{'=' if standing.tied else ''}{standing.rank}."


def standing_line(event: EventRow, standing: Standing, locale: object = DEFAULT) -> str:
    """`=2. <@author> — **3** votes (tied) · [entry](link)`."""
    entry = standing.entry
    where = event.thread_id or entry.channel_id
    link = (" · " + t(locale, "replies.votes.entry_link",
                      url=f"https://discord.com/channels/{event.guild_id}/{where}/"
                          f"{entry.message_id}") if entry.message_id else "")
    tie = " " + t(locale, "replies.votes.tied") if standing.tied else ""
    return (f"{place_word(standing)} <@{entry.author_id}> — {votes_words(entry.votes, locale)}"
            f"{tie}{link}")


def standings_block(event: EventRow, top: list[Standing], locale: object = DEFAULT) -> str:
    """The leading entries for `/event status`, or how to vote when nobody has yet."""
    if not top:
        return t(locale, "replies.votes.no_votes_yet")
    return (t(locale, "replies.votes.top") + "\n"
            + "\n".join(standing_line(event, s, locale) for s in top))


def winners_block(event: EventRow, winners: list[Standing], locale: object = DEFAULT) -> str:
    """The summary's winners: every entry placed within the top places, ties said as ties."""
    if not winners:
        return t(locale, "replies.votes.no_winner")
    tied = any(s.tied for s in winners)
    lines = [t(locale, "replies.votes.winners_tied" if tied else "replies.votes.winners")]
    lines += [standing_line(event, s, locale) for s in winners[:MAX_WINNER_LINES]]
    if len(winners) > MAX_WINNER_LINES:  # a wide tie: the summary must stay one message
        last = winners[MAX_WINNER_LINES]
        lines.append(t(locale, "replies.votes.more_tied", more=len(winners) - MAX_WINNER_LINES,
                       place=place_word(last)[:-1], votes=votes_words(last.votes, locale)))
    return "\n".join(lines)


def purchased_line(credits: int, locale: object = DEFAULT) -> str:
    """/quota's purchased credits (spent after the free quota: bot/service/purchased.py)."""
    return t(locale, "replies.purchased", credits=credits)
