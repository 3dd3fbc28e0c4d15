"""Moderation rules and their tables on a real SQLite file: blocklists, blocks, events, the CSV
export and a user's "delete my data"."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.models import GenerationRequest, MediaKind, Reference, Role
from bot.moderation import (
    ReviewMode,
    defuse_cell,
    forget_user,
    jobs_csv,
    matching_rule,
    rule_problem,
)
from bot.store import BlockRule, EventRow, JobMessage, JobState, NewJob, Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "seedance.sqlite3")
    yield s
    await s.close()


def rule(kind: str, pattern: str, rid: int = 1) -> BlockRule:
    return BlockRule(rid, "g", kind, pattern, "admin", 0.0)


def test_review_modes() -> None:
    assert ReviewMode.of("both").prompts and ReviewMode.of("both").results
    assert ReviewMode.of("prompts").prompts and not ReviewMode.of("prompts").results
    assert ReviewMode.of(None) is ReviewMode.OFF and ReviewMode.of("nonsense") is ReviewMode.OFF


@pytest.mark.parametrize(("text", "hit"), [
    ("a BANANA on a table", True),
    ("a banana-split", True),          # punctuation is a word boundary
    ("bananas everywhere", False),     # whole words only
    ("b\u200banana", True),            # zero-width space slipped in
    ("ｂａｎａｎａ smoothie", True),   # full-width letters fold to plain ones
    ("nothing to see", False),
])
def test_word_rules_match_whole_words_through_tricks(text: str, hit: bool) -> None:
    assert (matching_rule([rule("word", "banana")], text) is not None) is hit


def test_phrases_regexes_and_the_first_matching_rule() -> None:
    rules = [rule("word", "red   fox", 1), rule("regex", r"\bkill(s|ed)?\b", 2),
             rule("word", "fox", 3)]
    assert matching_rule(rules, "a Red fox runs").id == 1  # type: ignore[union-attr]
    assert matching_rule(rules, "he KILLED it").id == 2  # type: ignore[union-attr]
    assert matching_rule(rules, "a grey fox").id == 3  # type: ignore[union-attr]
    assert matching_rule(rules, "a grey wolf") is None


def test_bad_rules_are_refused_with_a_reason() -> None:
    assert "regular expression" in (rule_problem("regex", "([a-z]") or "")
    assert rule_problem("word", "   ") == "The rule is empty."
    assert "200" in (rule_problem("word", "x" * 201) or "")
    assert rule_problem("regex", r"\bcat\b") is None


async def test_blocklist_rows_are_per_guild_and_unique(store: Store) -> None:
    first = await store.add_block_rule("g", "word", "fox", added_by="a", now=1)
    assert first is not None and first.id > 0
    assert await store.add_block_rule("g", "word", "fox", added_by="b", now=2) is None
    await store.add_block_rule("other", "word", "fox", added_by="a", now=1)
    assert [r.pattern for r in await store.block_rules("g")] == ["fox"]
    removed = await store.remove_block_rule("g", first.id)
    assert removed is not None and removed.pattern == "fox"
    assert await store.remove_block_rule("g", first.id) is None
    assert await store.block_rules("g") == []


async def test_user_blocks(store: Store) -> None:
    assert await store.user_block("g", "u") is None
    await store.set_user_block("g", "u", "spam", blocked_by="mod", now=5)
    await store.set_user_block("g", "u", "spam again", blocked_by="mod2", now=6)
    assert await store.user_block("g", "u") == ("spam again", "mod2", 6)
    assert await store.user_block("other", "u") is None
    assert await store.user_blocks("g") == [("u", "spam again")]
    assert await store.remove_user_block("g", "u")
    assert not await store.remove_user_block("g", "u")


def new_job(user: str, *, guild: str = "g", event: str | None = None, prompt: str = "a fox",
            local: str | None = None) -> NewJob:
    refs = []
    if local:
        refs = [Reference(kind=MediaKind.IMAGE, role=Role.FIRST_FRAME, source=local,
                          local_path=local, name="cat.png")]
    return NewJob(id=str(uuid.uuid4()), guild_id=guild, channel_id="c", user_id=user,
                  role_ids=(), request=GenerationRequest(prompt=prompt, references=refs),
                  provider="local", model=None, state=JobState.QUEUED, credits_estimate=5,
                  context={"interaction_token": "secret"}, event_id=event)


async def test_events_limits_stats_and_closing(store: Store) -> None:
    event = EventRow(id="ev1", guild_id="g", name="Jam", channel_id="c", ends_at=100.0,
                     credits_per_user=10, moderation="results", created_at=1.0)
    assert await store.create_event(event) is not None
    assert await store.create_event(EventRow(**{**event.__dict__, "id": "ev2"})) is None
    await store.set_event_refs("ev1", thread_id="t1")
    assert (await store.open_event_in("g", ["t1"])).id == "ev1"  # type: ignore[union-attr]
    assert await store.open_event_in("g", ["elsewhere"]) is None
    limits = await store.quota_limits("g")
    assert [(r.scope, r.subject_id, r.credits, r.window) for r in limits] == [
        ("event", "ev1", 10, "event")]
    jobs = [new_job("a", event="ev1"), new_job("b", event="ev1"), new_job("a", event="ev1"),
            new_job("a")]
    for job in jobs:
        await store.create_job(job, [], now=10)
    await store.transition(jobs[0].id, JobState.DELIVERED, now=11, ledger="commit")
    await store.transition(jobs[1].id, JobState.REJECTED, now=11, ledger="release")
    stats = await store.event_stats("ev1")
    assert (stats.entries, stats.posted, stats.rejected, stats.participants,
            stats.credits_used) == (3, 1, 1, 2, 5)
    assert [e.id for e in await store.events_due(50)] == []
    assert [e.id for e in await store.events_due(100)] == ["ev1"]
    closed = await store.close_event("ev1", now=100)
    assert closed is not None and not closed.open and closed.closed_at == 100
    assert await store.close_event("ev1", now=101) is None
    assert [e.id for e in await store.events_due(200)] == ["ev1"]  # summary still to post
    await store.set_event_refs("ev1", summary_ref="m1")
    assert await store.events_due(200) == []


async def test_job_messages_and_what_a_restart_must_post(store: Store) -> None:
    job = new_job("a")
    await store.create_job(job, [], now=1)
    await store.transition(job.id, JobState.AWAITING_APPROVAL, now=2)
    missing = await store.jobs_without_message("approval", [JobState.AWAITING_APPROVAL])
    assert [j.id for j in missing] == [job.id]
    await store.set_job_message(JobMessage(job.id, "approval", "mods", "42"), now=3)
    assert await store.jobs_without_message("approval", [JobState.AWAITING_APPROVAL]) == []
    assert await store.job_message(job.id, "approval") == JobMessage(job.id, "approval", "mods",
                                                                     "42")
    assert await store.jobs_since("g", "a", 0) == 1 and await store.jobs_since("g", "a", 5) == 0
    assert await store.jobs_without_message("approval", [JobState.AWAITING_APPROVAL],
                                            guild_id="other") == []
    await store.update_guild_settings("g", lambda s: s.changed(audit_channel="7"))
    await store.update_guild_settings("quiet", lambda s: s.changed(moderation="off"))
    with_audit = {g for g, s in (await store.all_guild_settings()).items() if s.audit_channel}
    assert with_audit == {"g"}


async def test_csv_export_lists_exactly_the_guilds_jobs_in_range(store: Store) -> None:
    mine = [new_job("a", prompt="=HYPERLINK(\"x\")"), new_job("b")]
    for i, job in enumerate(mine):
        await store.create_job(job, [], now=100 + i)
    await store.create_job(new_job("a", guild="other"), [], now=100)
    await store.create_job(new_job("a"), [], now=500)  # after the range
    rows = list(csv.DictReader(io.StringIO(jobs_csv(await store.jobs_between("g", 100, 200)))))
    assert [r["job_id"] for r in rows] == [j.id for j in mine]
    assert rows[0]["prompt"].startswith("'=")  # a spreadsheet must not run it
    assert rows[0]["created_at_utc"] == "1970-01-01T00:01:40Z"


async def test_forget_user_strips_prompts_and_files_keeps_accounting(
        store: Store, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cached = data / "cache" / "cat.png"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"png")
    outside = tmp_path / "mine.png"
    outside.write_bytes(b"png")
    done = new_job("a", prompt="my secret idea", local=str(cached))
    other_file = new_job("a", local=str(outside))
    running = new_job("a")
    someone = new_job("b")
    for job in (done, other_file, running, someone):
        await store.create_job(job, [], now=1)
    for job in (done, other_file):
        await store.transition(job.id, JobState.DELIVERED, now=2, ledger="commit")
    (data / "jobs" / done.id).mkdir(parents=True)
    (data / "jobs" / done.id / "video.mp4").write_bytes(b"mp4")

    result = await forget_user(store, data, "a", now=3)
    assert (result.jobs, result.files) == (2, 2)
    assert not cached.exists() and outside.exists()  # never a file outside our data dir
    assert not (data / "jobs" / done.id).exists()
    gone = await store.get_job(done.id)
    assert gone is not None and gone.forgotten and gone.user_id.startswith("forgotten-")
    assert gone.request.prompt == "" and gone.request.references == []
    assert gone.context == {} and gone.credits_charged == 5  # accounting stays
    assert (await store.get_job(running.id)).user_id == "a"  # type: ignore[union-attr]
    assert (await store.get_job(someone.id)).request.prompt == "a fox"  # type: ignore[union-attr]
    # Recent ledger lines keep the user id, so deleting data never resets a quota.
    assert {line.user_id for line in await store.ledger(done.id)} == {"a"}


async def test_ledger_lines_take_the_pseudonym_once_no_quota_needs_them(
        store: Store, tmp_path: Path) -> None:
    job = new_job("a")
    await store.create_job(job, [], now=1000)
    await store.transition(job.id, JobState.DELIVERED, now=1001, ledger="commit")
    await forget_user(store, tmp_path / "data", "a", now=2000)
    assert {line.user_id for line in await store.ledger(job.id)} == {"a"}
    assert await store.finish_forgetting(now=2000 + 86400) == 0  # a quota may still need it
    later = await store.create_job(new_job("a"), [], now=5000)  # after the request: kept
    assert later is None
    month = 32 * 86400
    assert await store.finish_forgetting(now=1000 + month + 1) == 2
    pseudonym = (await store.get_job(job.id)).user_id  # type: ignore[union-attr]
    assert {line.user_id for line in await store.ledger(job.id)} == {pseudonym}
    assert {line.user_id for line in await store.ledger()} == {pseudonym, "a"}
    assert await store.finish_forgetting(now=2000 + month + 1) == 0  # request done, dropped


@pytest.mark.parametrize("cell", [
    "=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n=1", "  =HYPERLINK(\"x\")",
    "\u3000=1", "\uff1dcmd|' /C calc'!A0", " \t@x", "\u00a0-2",
])
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(cell: str) -> None:
    """OWASP's list: = + - @ first, also after whitespace (and in full-width forms); a tab or
    CR first."""
    assert defuse_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["a fox", "fox = cat", "", "3 - 1", "e-mail"])
def test_csv_plain_cells_stay_as_they_are(cell: str) -> None:
    assert defuse_cell(cell) == cell
