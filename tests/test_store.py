"""The store on both backends (a SQLite file and a PostgreSQL database, `store_url`):
migrations, conditional transitions, the ledger, admission; WAL on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.guild import GuildSettings
from bot.models import GenerationRequest
from bot.store import (
    CheckResult,
    JobState,
    NewJob,
    QuotaLimitRow,
    Store,
    Timing,
    UsageCheck,
    migrations,
)
from bot.store.schema import split_statements


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    yield s
    await s.close()


def new_job(user: str = "u1", credits: int = 5, guild: str = "g1", **kw: object) -> NewJob:
    return NewJob(id=str(uuid.uuid4()), guild_id=guild, channel_id="c", user_id=user,
                  role_ids=("r1", "r2"), request=GenerationRequest(prompt="a fox", duration=5),
                  provider="local", model=None, state=JobState.QUEUED, credits_estimate=credits,
                  context={"token": "abc"}, **kw)  # type: ignore[arg-type]


async def test_migrations_apply_once(store_url: str) -> None:
    first, second = await asyncio.gather(Store.open(store_url), Store.open(store_url))  # racing
    latest = max(v for v, _n, _s in migrations(first.db.dialect))
    assert await first.schema_version() == latest
    await first.close()
    await second.close()
    reopened = await Store.open(store_url)
    rows = await reopened.db.fetch("SELECT version FROM schema_migrations ORDER BY version")
    await reopened.close()
    assert [r[0] for r in rows] == [v for v, _n, _s in migrations(reopened.db.dialect)]


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "seedance.sqlite3"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migration_files_are_numbered_and_split_cleanly() -> None:
    found = migrations()
    assert [v for v, _n, _s in found] == list(range(1, len(found) + 1))
    for _v, _n, sql in found:
        assert all(sqlite3.complete_statement(s) for s in split_statements(sql))
    assert split_statements("-- note\nCREATE TABLE a (x);\n-- tail\n") == [
        "-- note\nCREATE TABLE a (x);"
    ]
    with pytest.raises(ValueError):
        split_statements("CREATE TABLE a (x")


async def test_job_round_trip_and_audit_trail(store: Store) -> None:
    job = new_job()
    assert await store.create_job(job, [], now=10.0) is None
    view = await store.get_job(job.id)
    assert view is not None
    assert view.state is JobState.QUEUED and view.role_ids == ("r1", "r2")
    assert view.request.prompt == "a fox" and view.context == {"token": "abc"}
    assert view.created_at == 10.0 and view.seq == 1

    moved = await store.transition(job.id, JobState.SUBMITTING, now=11.0,
                                   from_states=[JobState.QUEUED], attempts=1, started_at=11.0)
    assert moved is not None and moved.attempts == 1 and moved.started_at == 11.0
    # A transition from the wrong state changes nothing and leaves no trail.
    assert await store.transition(job.id, JobState.DELIVERED, now=12.0,
                                  from_states=[JobState.READY]) is None
    trail = await store.transitions(job.id)
    assert [(t.from_state, t.to_state, t.at) for t in trail] == [
        (None, "queued", 10.0), ("queued", "submitting", 11.0)
    ]
    with pytest.raises(ValueError):
        await store.transition(job.id, JobState.FAILED, now=1.0, state="x")
    with pytest.raises(ValueError):
        await store.update_job(job.id, now=1.0, user_id="someone")


async def test_every_column_of_a_job_reads_back_as_written(store: Store) -> None:
    """bot/store/rows.py decodes a row by name from a dict copy and skips parsing empty JSON;
    what it gives back is what was written, and each read's JSON values are its own."""
    job = new_job()
    await store.create_job(job, [], now=10.0)
    fresh = await store.get_job(job.id)
    assert fresh is not None
    assert (fresh.result_meta, fresh.fleet, fresh.task_id, fresh.owner) == ({}, {}, None, None)
    assert fresh.audio_retried is False and fresh.hold_result is False and fresh.forgotten is False
    fresh.result_meta["mine"] = 1  # a caller's change to its copy reaches no other read
    again = await store.get_job(job.id)
    assert again is not None and again.result_meta == {}
    meta = {"video_urls": ["https://cdn.example/v.mp4"], "cost": 0.5, "nested": {"a": [1, 2]}}
    fleet = {"gateways": ["anyfast", "runware"], "why": ["timeout"]}
    await store.update_job(job.id, now=12.0, result_meta=meta, fleet=fleet, task_id="t-1",
                           hold_result=True, context={})
    [listed] = await store.jobs([JobState.QUEUED])
    got = await store.get_job(job.id)
    assert got == listed
    assert got is not None and (got.result_meta, got.fleet, got.context) == (meta, fleet, {})
    assert (got.role_ids, got.task_id, got.hold_result, got.updated_at) == (
        ("r1", "r2"), "t-1", True, 12.0)


async def test_result_metas_written_together_land_on_their_own_rows(store: Store) -> None:
    """`update_result_meta`: one statement per chunk of jobs (bot/engine/recovery.py's
    snapshots), each row getting its own value, the others untouched; over a chunk too."""
    jobs = [new_job(user=f"u{i}") for i in range(503)]
    for job in jobs:
        await store.create_job(job, [], now=1.0)
    metas = {job.id: {"listed_before": [f"t-{i}", "t-x"], "n": i}
             for i, job in enumerate(jobs[:-1])}
    await store.update_result_meta(metas, now=9.0)
    rows = {j.id: j for j in await store.jobs([JobState.QUEUED])}
    assert {job_id: rows[job_id].result_meta for job_id in metas} == metas
    assert {rows[job_id].updated_at for job_id in metas} == {9.0}
    untouched = rows[jobs[-1].id]
    assert (untouched.result_meta, untouched.updated_at) == ({}, 1.0)
    await store.update_result_meta({}, now=10.0)  # nothing to write: no statement


async def test_seq_orders_jobs_and_filters_work(store: Store) -> None:
    jobs = [new_job(user=u) for u in ("a", "b", "a")]
    for j in jobs:
        await store.create_job(j, [], now=1.0)
    assert [j.seq for j in await store.jobs()] == [1, 2, 3]
    assert [j.id for j in await store.jobs(user_id="a")] == [jobs[0].id, jobs[2].id]
    assert await store.jobs([JobState.READY]) == []
    assert len(await store.jobs([JobState.QUEUED], guild_id="g1")) == 3


async def test_a_reservation_settles_once(store: Store) -> None:
    job = new_job(credits=8)
    await store.create_job(job, [], now=1.0)
    await store.transition(job.id, JobState.READY, now=2.0, ledger="commit")
    await store.transition(job.id, JobState.READY, now=3.0, ledger="commit")  # replayed
    await store.transition(job.id, JobState.FAILED, now=4.0, ledger="release")  # too late
    lines = await store.ledger(job.id)
    assert [(ln.kind, ln.credits, ln.reserved_at) for ln in lines] == [
        ("reserve", 8, 1.0), ("commit", 8, 1.0)
    ]
    assert (await store.get_job(job.id)).credits_charged == 8  # type: ignore[union-attr]


async def test_a_charge_from_a_known_state_settles_once(store_url: str) -> None:
    """The engine's charge names the state it read the job in (on PostgreSQL then one
    statement: the move, its history and the ledger line): it still settles once, whoever
    races for it, and never after a release."""
    stores = [await Store.open(store_url) for _ in range(2)]
    store = stores[0]
    try:
        job, gone = new_job(credits=8), new_job(credits=5)
        for j in (job, gone):
            await store.create_job(j, [], now=1.0)
            await store.transition(j.id, JobState.READY, now=2.0)
        # Two processes deliver the same job at once: one move, one charge.
        moved = await asyncio.gather(*(
            s.transition(job.id, JobState.DELIVERED, now=3.0, from_states={JobState.READY},
                         ledger="commit", detail="posted") for s in stores))
        assert sum(m is not None for m in moved) == 1
        winner = next(m for m in moved if m is not None)
        assert winner.credits_charged == 8 and winner.state is JobState.DELIVERED
        assert [(ln.kind, ln.credits, ln.reserved_at, ln.at) for ln in
                await store.ledger(job.id)] == [("reserve", 8, 1.0, 1.0), ("commit", 8, 1.0, 3.0)]
        assert [t.to_state for t in await store.transitions(job.id)] == [
            "queued", "ready", "delivered"]
        # Released first (a cancel), then a late charge: no second settlement, no charge.
        await store.transition(gone.id, JobState.READY, now=4.0, ledger="release")
        late = await store.transition(gone.id, JobState.DELIVERED, now=5.0,
                                      from_states={JobState.READY}, ledger="commit")
        assert late is not None and late.credits_charged == 0
        assert [ln.kind for ln in await store.ledger(gone.id)] == ["reserve", "release"]
        assert await store.usage(UsageCheck("guild", "g1", -1, 0.0)) == 8
    finally:
        for s in stores:
            await s.close()


async def test_usage_counts_reservations_minus_releases_in_the_window(store: Store) -> None:
    old, kept, returned = new_job(credits=3), new_job(credits=4), new_job(credits=5)
    await store.create_job(old, [], now=50.0)
    await store.create_job(kept, [], now=100.0)
    await store.create_job(returned, [], now=100.0)
    await store.transition(returned.id, JobState.CANCELLED, now=200.0, ledger="release")
    check = UsageCheck("user", "g1", 10, since=100.0, user_id="u1")
    assert await store.usage(check) == 4
    assert await store.usage(UsageCheck("guild", "g1", 10, since=0.0)) == 7
    assert await store.usage(UsageCheck("guild", "other", 10, since=0.0)) == 0
    refused = await store.create_job(new_job(credits=7), [check], now=150.0)
    assert refused is not None and refused.used == 4 and refused.check is check
    assert await store.create_job(new_job(credits=6), [check], now=150.0) is None


async def test_event_usage_is_per_user_per_event(store: Store) -> None:
    await store.create_job(new_job(credits=3, event_id="jam"), [], now=1.0)
    await store.create_job(new_job(credits=4), [], now=1.0)
    check = UsageCheck("event", "g1", 5, 0.0, user_id="u1", event_id="jam")
    assert await store.usage(check) == 3


async def test_quota_limit_rows_upsert_and_delete(store: Store) -> None:
    await store.set_quota_limit(QuotaLimitRow("role", "g1", "vip", 10, "day"), now=1.0)
    await store.set_quota_limit(QuotaLimitRow("role", "g1", "vip", 20, "month"), now=2.0)
    await store.set_quota_limit(QuotaLimitRow("guild", "g1", "", 500, "month"), now=2.0)
    assert await store.quota_limits("g1") == [
        QuotaLimitRow("guild", "g1", "", 500, "month"),
        QuotaLimitRow("role", "g1", "vip", 20, "month"),
    ]
    assert await store.quota_limits("g2") == []
    assert await store.delete_quota_limit("role", "g1", "vip") is True
    assert await store.delete_quota_limit("role", "g1", "vip") is False


async def test_guild_settings_merge_remove_and_replace(store: Store) -> None:
    """Settings are typed now (bot/guild.py); a change merges into what is stored, None removes
    a setting, a whole new value replaces it, and an unknown key is refused."""
    assert await store.guild_settings("g1") == GuildSettings()
    await store.update_guild_settings(
        "g1", lambda s: s.changed(provider="runware", allowed_channels=["1", "2"]))
    merged = await store.update_guild_settings(
        "g1", lambda s: s.changed(resolution="720p", provider=None))
    assert merged.stored() == {"allowed_channels": ["1", "2"], "resolution": "720p"}
    assert await store.guild_settings("g1") == merged
    replaced = await store.update_guild_settings("g1", lambda s: GuildSettings(audio=False))
    assert replaced.stored() == {"audio": False}
    with pytest.raises(ValueError, match="no server setting 'channels'"):
        await store.update_guild_settings("g1", lambda s: s.changed(channels=["1"]))
    assert (await store.guild_settings("g1")).stored() == {"audio": False}  # nothing written


async def test_recent_durations_newest_first(store: Store) -> None:
    for seconds in (10.0, 20.0, 30.0):
        await store.record_duration("runware", "720p", 5, seconds, now=seconds)
    await store.record_duration("runware", "720p", 10, 99.0, now=1.0)
    assert await store.recent_durations("runware", "720p", 5, limit=2) == [30.0, 20.0]


async def test_a_tasks_timing_is_written_with_its_move_or_not_at_all(store: Store) -> None:
    """The time a task took goes in with the move that ends it: a move not made times
    nothing."""
    job = new_job()
    await store.create_job(job, [], now=1.0)
    timing = Timing("runware", "720p", 5, 42.0)
    # The job is queued, not generating: the move is not made, and nothing is timed.
    assert await store.transition(job.id, JobState.DOWNLOADING, now=2.0, timing=timing,
                                  from_states=[JobState.GENERATING]) is None
    assert await store.task_times(0.0) == []
    # From any state (the move that reads the row first), then from the one state it is in
    # (one statement on PostgreSQL): each made, and timed at the move's time.
    assert await store.transition(job.id, JobState.DOWNLOADING, now=3.0, timing=timing)
    moved = await store.transition(job.id, JobState.READY, now=4.0,
                                   timing=Timing("runware", "720p", 5, 7.5),
                                   from_states=[JobState.DOWNLOADING])
    assert moved is not None and moved.state is JobState.READY
    assert [(t.provider, t.seconds, t.at) for t in await store.task_times(0.0)] == [
        ("runware", 42.0, 3.0), ("runware", 7.5, 4.0)]
    assert await store.recent_durations("runware", "720p", 5) == [7.5, 42.0]


async def test_a_cancelled_writer_leaves_a_whole_transaction(store: Store) -> None:
    job = new_job()
    await store.create_job(job, [], now=1.0)
    writer = asyncio.ensure_future(store.transition(
        job.id, JobState.CANCELLED, now=2.0, ledger="release", finished_at=2.0
    ))
    await asyncio.sleep(0)
    writer.cancel()
    # The next write queues behind the shielded one, so it sees it finished.
    await store.update_job(job.id, now=3.0, context={"after": True})
    view = await store.get_job(job.id)
    assert view is not None and view.state is JobState.CANCELLED
    assert [ln.kind for ln in await store.ledger(job.id)] == ["reserve", "release"]
    assert [t.to_state for t in await store.transitions(job.id)] == ["queued", "cancelled"]


async def test_finished_before_lists_terminal_jobs_with_files(store: Store) -> None:
    done, running = new_job(), new_job()
    await store.create_job(done, [], now=1.0)
    await store.create_job(running, [], now=1.0)
    await store.transition(done.id, JobState.DELIVERED, now=5.0, finished_at=5.0,
                           result_path="/x/video.mp4")
    await store.transition(running.id, JobState.READY, now=5.0, result_path="/y/video.mp4")
    assert [j.id for j in await store.finished_before(10.0)] == [done.id]
    assert await store.finished_before(4.0) == []


# ---- admission: the caps checked in the enqueue transaction ------------------------------------
async def test_admission_caps_refuse_in_order_and_write_nothing(store: Store) -> None:
    from bot.store.records import Admission, AdmissionRefused

    caps = Admission(guild_queued=3, user_queued=2, per_minute=10)
    assert await store.create_job(new_job("a"), [], now=100.0, admission=caps) is None
    assert await store.create_job(new_job("a"), [], now=100.0, admission=caps) is None
    assert await store.create_job(new_job("a"), [], now=100.0, admission=caps) == (
        AdmissionRefused("user_queued", 2, 2))
    assert await store.create_job(new_job("b"), [], now=100.0, admission=caps) is None
    # The server's cap is checked before the member's: "b" has room, the server has none.
    assert await store.create_job(new_job("b"), [], now=100.0, admission=caps) == (
        AdmissionRefused("guild_queued", 3, 3))
    assert await store.create_job(new_job("c", guild="g2"), [], now=100.0,
                                  admission=caps) is None  # another server: its own count
    assert len(await store.jobs(guild_id="g1")) == 3 and len(await store.ledger()) == 4


async def test_admission_counts_only_waiting_jobs_and_quota_comes_first(store: Store) -> None:
    from bot.store.records import Admission, AdmissionRefused

    caps = Admission(user_queued=1)
    first = new_job("a")
    assert await store.create_job(first, [], now=1.0, admission=caps) is None
    full = UsageCheck("user", "g1", 5, since=0.0, user_id="a")
    refused = await store.create_job(new_job("a"), [full], now=1.0, admission=caps)
    assert isinstance(refused, CheckResult)  # the credits are out too: the quota says so
    assert await store.create_job(new_job("a"), [], now=1.0, admission=caps) == (
        AdmissionRefused("user_queued", 1, 1))
    await store.transition(first.id, JobState.SUBMITTING, now=2.0)  # running: not waiting
    assert await store.create_job(new_job("a"), [], now=2.0, admission=caps) is None
    approval = new_job("b")
    approval = NewJob(**{**approval.__dict__, "state": JobState.AWAITING_APPROVAL})
    assert await store.create_job(approval, [], now=2.0, admission=caps) is None
    assert await store.create_job(new_job("b"), [], now=2.0, admission=caps) == (
        AdmissionRefused("user_queued", 1, 1))  # awaiting approval is waiting too


async def test_admission_per_minute_counts_the_last_sixty_seconds(store: Store) -> None:
    from bot.store.records import Admission, AdmissionRefused

    caps = Admission(per_minute=2)
    assert await store.create_job(new_job("a"), [], now=1000.0, admission=caps) is None
    assert await store.create_job(new_job("a"), [], now=1030.0, admission=caps) is None
    assert await store.create_job(new_job("a"), [], now=1059.0, admission=caps) == (
        AdmissionRefused("per_minute", 2, 2))
    assert await store.create_job(new_job("b"), [], now=1059.0, admission=caps) is None
    # At 1060 the first job is a minute old: one place again, not two.
    assert await store.create_job(new_job("a"), [], now=1060.0, admission=caps) is None
    assert await store.create_job(new_job("a"), [], now=1060.0, admission=caps) == (
        AdmissionRefused("per_minute", 2, 2))
    # None and 0 mean no rate at all.
    for off in (Admission(per_minute=None), Admission(per_minute=0)):
        assert await store.create_job(new_job("a"), [], now=1060.0, admission=off) is None


async def test_admission_holds_across_connections(store_url: str) -> None:
    """Two processes enqueueing at once cannot both take the last place."""
    from bot.store.records import Admission

    stores = [await Store.open(store_url) for _ in range(3)]
    try:
        caps = Admission(user_queued=4)
        accepted = await asyncio.gather(*(
            stores[i % 3].create_job(new_job("a"), [], now=1.0, admission=caps)
            for i in range(30)))
        assert sum(r is None for r in accepted) == 4
        assert len(await stores[0].jobs(user_id="a")) == 4
    finally:
        for s in stores:
            await s.close()
