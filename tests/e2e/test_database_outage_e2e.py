"""PostgreSQL lost mid-run, through the real bot and the fake Discord: the bot talks to the
database through a TCP relay the test can cut. While it is cut, a new /video is told to try
again shortly and nothing is written; the job already running waits; when the database is
back, that job is posted once and charged once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.store import JobState, Store
from tests.e2e.test_discord_e2e import FAST, running, status_text, video_posts
from tests.fakes.discord.server import FakeDiscord

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


class Relay:
    """A loopback TCP relay to the database that can be cut (every connection dropped, new
    ones refused) and restored, as a database restart or a network failure looks."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.server: asyncio.Server | None = None
        self.listen_port = 0
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)
        self.listen_port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        pipes = {asyncio.ensure_future(self._pump(reader, up_writer)),
                 asyncio.ensure_future(self._pump(up_reader, writer))}
        self.pipes |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            self.pipes -= pipes
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


def said(inter: object) -> str:
    texts = [status_text(inter), *(str(m.content) for m in getattr(inter, "followups", []))]
    return "\n".join(texts)


async def test_a_lost_database_is_waited_out(tmp_path: Path, postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await relay.start()
    user = f"{parts.username}@" if parts.username else ""
    relayed = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{relay.listen_port}"))
    async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_DATABASE_URL=relayed,
                                              SEEDANCE_LOCAL_DELAY="3"):
        first = await fake.slash("video", {"prompt": "a lighthouse at dawn", **FAST})
        await fake.wait_for(lambda: "generating" in status_text(first) or None, timeout=60,
                            what="the first job generating")
        await relay.cut()
        second = await fake.slash("video", {"prompt": "a harbour at night", **FAST})
        await fake.wait_for(lambda: "try again shortly" in said(second) or None, timeout=60,
                            what="the outage answer")
        await asyncio.sleep(2.0)  # the first job's render ends while the database is away
        await relay.start()
        await fake.wait_for(lambda: video_posts(fake) or None, timeout=90,
                            what="the first video, once the database is back")
        await asyncio.sleep(1.0)
        store = await Store.open(postgres_url)
        try:
            jobs = await store.jobs()
            assert len(jobs) == 1, [j.request.prompt for j in jobs]  # the second never was
            assert jobs[0].state is JobState.DELIVERED
            assert [ln.kind for ln in await store.ledger(jobs[0].id)] == ["reserve", "commit"]
        finally:
            await store.close()
        assert len(video_posts(fake)) == 1
    await relay.cut()
