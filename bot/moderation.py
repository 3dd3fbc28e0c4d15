"""Moderation rules that need no Discord: review modes, prompt blocklists, the CSV export and a
user's "delete my data". The cogs decide *when*; this module decides *what*.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.guild import FixedSettings, ReviewMode
from bot.i18n import Said
from bot.models import GenerationRequest
from bot.store import TERMINAL_STATES, BlockRule, JobView, Store

#: Longest rule an admin may add; long patterns are almost always a paste mistake.
MAX_PATTERN = 200
#: Characters people slip into words to dodge a filter (zero-width space, joiner, soft hyphen…).
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def normalise(text: str) -> str:
    """What rules are matched against: NFKC (full-width and styled letters fold to plain ones),
    case-folded, invisible characters removed."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()


def rule_problem(kind: str, pattern: str) -> Said | None:
    """Why a rule can't be added, or None."""
    if not pattern.strip():
        return Said("errors.setting.rule_empty")
    if len(pattern) > MAX_PATTERN:
        return Said("errors.setting.rule_too_long", most=MAX_PATTERN)
    if kind == "regex":
        try:
            re.compile(pattern)
        except re.error as exc:
            return Said("errors.setting.rule_regex", reason=str(exc))
    elif kind != "word":
        return Said("errors.setting.rule_kind")
    return None


def _compiled(rule: BlockRule) -> re.Pattern[str]:
    if rule.kind == "word":
        # Whole words or phrases, any case; inner spaces match any run of whitespace.
        words = [re.escape(w) for w in normalise(rule.pattern).split()]
        return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")
    return re.compile(rule.pattern, re.IGNORECASE)


def matching_rule(rules: Iterable[BlockRule], text: str) -> BlockRule | None:
    """The first rule the text breaks (rules are checked in the order they were added)."""
    folded = normalise(text)
    for rule in rules:
        try:
            pattern = _compiled(rule)
        except re.error:
            continue  # validated when added; a rule from an older Python may not compile
        targets = (folded,) if rule.kind == "word" else (text, folded)
        if any(pattern.search(t) for t in targets):
            return rule
    return None


# ---- export ------------------------------------------------------------------------------
CSV_COLUMNS = (
    "job_id", "created_at_utc", "finished_at_utc", "user_id", "channel_id", "event_id", "state",
    "provider", "model", "mode", "duration_s", "resolution", "audio", "inputs", "prompt",
    "credits_estimate", "credits_charged", "moderator_id", "error_kind", "error_message",
    "delivery_ref", "ratio", "options", "event_fixed", "votes", "voters",
)


def _iso(unix: float | None) -> str:
    if unix is None:
        return ""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jobs_csv(jobs: Sequence[JobView], event_fixed: Mapping[str, str] | None = None,
             voters: Mapping[str, Sequence[str]] | None = None) -> str:
    """A guild's job history for a spreadsheet. Cells that a spreadsheet would run as a formula
    are defused (see `defuse_cell`): prompts are user input. `event_fixed`: what each event
    (by id) fixed for its entries, in words (bot/guild.py FixedSettings.words). `voters`: who
    voted for each event entry (by job id, bot/service/votes.py), as a count and the ids."""
    event_fixed = event_fixed or {}
    voters = voters or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for job in jobs:
        req = job.request
        inputs = "; ".join(f"{r.kind.value}:{r.role.value if r.role else 'unmapped'}"
                           for r in req.references)
        row = [
            job.id, _iso(job.created_at), _iso(job.finished_at), job.user_id, job.channel_id,
            job.event_id or "", job.state.value, job.provider, job.model or "", req.mode.value,
            req.duration, req.resolution.value, int(req.audio), inputs, req.prompt,
            job.credits_estimate, job.credits_charged, job.moderator_id or "",
            job.error_kind or "", job.error_message or "", job.delivery_ref or "",
            req.ratio.value, _options(req), event_fixed.get(job.event_id or "", ""),
            len(voters.get(job.id, ())) if job.event_id else "",
            "; ".join(voters.get(job.id, ())),
        ]
        writer.writerow([defuse_cell(v) for v in row])
    return out.getvalue()


def _options(req: GenerationRequest) -> str:
    """The optional features a job asked of its gateway, e.g. `camera_fixed; watermark`."""
    return "; ".join(name for name in ("camera_fixed", "web_search", "watermark")
                     if getattr(req, name))


#: What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list).
_FORMULA_START = frozenset("=+-@")
_CONTROL_START = frozenset("\t\r\n")


def defuse_cell(value: object) -> object:
    """Prefix an apostrophe to a text cell a spreadsheet would run: one starting with a tab,
    CR or LF, or whose first character after any whitespace is = + - @ (also in full-width
    or other compatibility forms, which some spreadsheets fold)."""
    if not isinstance(value, str) or not value:
        return value
    first = unicodedata.normalize("NFKC", value.lstrip()[:1])[:1]
    if value[0] in _CONTROL_START or first in _FORMULA_START:
        return "'" + value
    return value


# ---- delete my data ----------------------------------------------------------------------
@dataclass(frozen=True)
class Forgotten:
    jobs: int
    files: int
    votes: int = 0  # votes cast in events, deleted (bot/service/privacy.py)


async def forget_user(
    store: Store, data_dir: Path, user_id: str, *, now: float,
    discard: Callable[[JobView], Awaitable[None]] | None = None,
) -> Forgotten:
    """Delete a user's stored prompts, inputs and files from their finished jobs.

    Jobs keep an anonymised accounting row (provider, model, duration, credits) under a random
    pseudonym. Unfinished jobs are left alone: the caller asks the user to wait or cancel.
    `discard` drops the provider's copy of each job's task (the embedded renderer keeps the
    prompt and the video under local_tasks/ until then).
    """
    pseudonym = f"forgotten-{uuid.uuid4().hex[:12]}"
    jobs = await store.forget_user(user_id, pseudonym=pseudonym, now=now,
                                   states=sorted(TERMINAL_STATES))
    root = data_dir.resolve()
    removed = 0
    for job in jobs:
        if discard is not None:
            await discard(job)
        folder = data_dir / "jobs" / job.id
        if folder.exists():
            removed += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=True)
        for ref in job.request.references:
            if not ref.local_path:
                continue
            path = Path(ref.local_path).resolve()
            # Only our own copies (the intake cache), never a file the operator pointed at.
            if path.is_relative_to(root) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return Forgotten(len(jobs), removed)


__all__ = [
    "CSV_COLUMNS",
    "Forgotten",
    "ReviewMode",
    "defuse_cell",
    "fixed_words",
    "forget_user",
    "jobs_csv",
    "matching_rule",
    "normalise",
    "rule_problem",
]


def fixed_words(fixed: Mapping[str, object]) -> str:
    """An event's stored fixed settings in words (for the export)."""
    return FixedSettings.from_stored(dict(fixed)).words()
