"""Fakes for the engine tests (no tests here): a scripted provider whose results are served by
a real loopback HTTP server, a delivery port that dedupes by job id like Discord's nonce, and a
clock whose sleep advances time instantly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.engine import JobEvent, JobResult, JobView
from bot.errors import GatewayError, TaskNotFoundError
from bot.models import GenerationRequest, ProviderResult, TaskState, TaskStatus
from bot.providers.base import Capabilities, SubmitResult
from tests.fakes.common import FakeGateway, sample_image, sample_video

#: Real media: the engine proves every result from its bytes before the job moves on.
VIDEO_BYTES = sample_video(496, 864, 2.0, audio=False)
FRAME_BYTES = sample_image(496, 864)


class FakeClock:
    """`now()` is the engine's clock; `sleep(s)` moves it forward and yields once."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []
        #: Sleeps at least this long never end (the test delivers a callback instead).
        self.block_from: float | None = None

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.block_from is not None and seconds >= self.block_from:
            await asyncio.Event().wait()
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class Outcome:
    """How one task ends: after `polls` looks, succeed (error None) or fail with `error`."""

    polls: int = 1
    error: GatewayError | None = None
    seed: int = 42
    cost: float = 0.25
    last_frame: bool = True
    progress: float | None = 50.0
    ttl: float = 3600.0  # seconds the result URL works
    #: Every poll of the task waits forever: it stays running until cancelled, whatever the
    #: (shared, fast-moving) fake clock says.
    hang: bool = False


@dataclass
class FakeTask:
    task_id: str
    key: str
    request: GenerationRequest
    outcome: Outcome
    polls: int = 0
    cancelled: bool = False
    result: ProviderResult | None = None


@dataclass
class FakeProvider:
    """A Provider with scripted outcomes. Results live on a real aiohttp file server."""

    files: FakeGateway
    name: str = "fake"
    idempotent_submit: bool = False
    typical: float = 60.0
    webhooks: bool = False
    can_cancel: bool = True
    script: Callable[[GenerationRequest], Outcome] = field(default=lambda _r: Outcome())
    submit_errors: list[GatewayError] = field(default_factory=list)
    poll_errors: list[GatewayError] = field(default_factory=list)
    submit_gate: asyncio.Event | None = None  # set → submits proceed
    created_gate: asyncio.Event | None = None  # set → a created task's id is returned
    poll_gate: asyncio.Event | None = None
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    submits: list[tuple[str, GenerationRequest, str | None]] = field(default_factory=list)
    submit_entered: asyncio.Event = field(default_factory=asyncio.Event)
    discarded: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def default_model(self) -> str:
        return "fake-1"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            provider=self.name, model=model or "fake-1", typical_seconds=self.typical,
            webhooks=self.webhooks,
            result_hosts=("127.0.0.1",),
        )

    async def submit(
        self, request: GenerationRequest, *, idempotency_key: str, callback_url: str | None = None
    ) -> SubmitResult:
        self.submits.append((idempotency_key, request, callback_url))
        self.submit_entered.set()
        if self.submit_gate is not None:
            await self.submit_gate.wait()
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        if self.idempotent_submit and idempotency_key in self.by_key:
            return SubmitResult(self.by_key[idempotency_key])
        task_id = f"task-{next(self._ids)}"
        self.tasks[task_id] = FakeTask(task_id, idempotency_key, request, self.script(request))
        self.by_key[idempotency_key] = task_id
        if self.created_gate is not None:  # the gateway has the task; the answer is late
            await self.created_gate.wait()
        return SubmitResult(task_id)

    def result_for(self, task: FakeTask) -> ProviderResult:
        name = task.task_id
        videos = [self.files.add_file(f"{name}-{n}.mp4" if n else f"{name}.mp4", VIDEO_BYTES,
                                      ttl=task.outcome.ttl) for n in range(task.request.results)]
        frame = None
        if task.outcome.last_frame:
            frame = self.files.add_file(f"{name}.png", FRAME_BYTES, ttl=task.outcome.ttl)
        return ProviderResult(
            video_urls=videos, last_frame_url=frame, seed=task.outcome.seed,
            cost=task.outcome.cost,
        )

    def state_of(self, task: FakeTask) -> TaskState:
        if task.cancelled:
            return TaskState(task_id=task.task_id, status=TaskStatus.FAILED,
                             error=GatewayError("cancelled", provider=self.name))
        if task.polls < task.outcome.polls:
            return TaskState(task_id=task.task_id, status=TaskStatus.RUNNING,
                             progress=task.outcome.progress)
        if task.outcome.error is not None:
            return TaskState(task_id=task.task_id, status=TaskStatus.FAILED,
                             error=task.outcome.error)
        task.result = self.result_for(task)
        return TaskState(task_id=task.task_id, status=TaskStatus.SUCCEEDED, result=task.result)

    async def poll(self, task_id: str) -> TaskState:
        if self.poll_gate is not None:
            await self.poll_gate.wait()
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError("no such task", provider=self.name, status=404)
        task.polls += 1
        if task.outcome.hang:
            await asyncio.Event().wait()
        return self.state_of(task)

    async def cancel(self, task_id: str) -> bool:
        if self.can_cancel and task_id in self.tasks:
            self.tasks[task_id].cancelled = True
            return True
        return False

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> TaskState:
        # Engine tests hand callbacks to `Engine.on_callback` as TaskStates; no HTTP body
        # ever reaches this fake (tests/test_webhooks.py covers the receiver).
        raise AssertionError("the in-memory fake provider receives no HTTP callbacks")

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        return True

    async def discard(self, task_id: str) -> None:
        self.discarded.append(task_id)

    async def aclose(self) -> None:
        return None

    def polls_of(self, task_id: str) -> int:
        return self.tasks[task_id].polls


@dataclass
class FakeDelivery:
    """Records events; posts once per job id (the nonce), like the Discord layer will."""

    events: list[tuple[str, JobEvent]] = field(default_factory=list)
    posts: dict[str, str] = field(default_factory=dict)
    post_count: Counter[str] = field(default_factory=Counter)
    deliver_calls: Counter[str] = field(default_factory=Counter)
    fail_times: int = 0
    hang_after_post: bool = False  # post, then never return (to crash in between)
    gate: asyncio.Event | None = None  # set → deliveries may post
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    fail_events: bool = False
    posted: asyncio.Event = field(default_factory=asyncio.Event)
    results: dict[str, JobResult] = field(default_factory=dict)

    async def on_event(self, job: JobView, event: JobEvent) -> None:
        self.events.append((job.id, event))
        if self.fail_events:
            raise RuntimeError("status message could not be edited")

    async def deliver(self, job: JobView, result: JobResult) -> str:
        self.deliver_calls[job.id] += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("discord is down")
        if job.id not in self.posts:  # the nonce check: find the earlier post
            assert result.video_path.exists(), "delivered a file that is not on disk"
            self.posts[job.id] = f"msg-{len(self.posts) + 1}"
            self.post_count[job.id] += 1
            self.results[job.id] = result
        self.posted.set()
        if self.hang_after_post:
            await asyncio.Event().wait()
        return self.posts[job.id]

    def kinds(self, job_id: str) -> list[str]:
        return [e.kind.value for j, e in self.events if j == job_id]

    def of(self, job_id: str, kind: str) -> list[JobEvent]:
        return [e for j, e in self.events if j == job_id and e.kind.value == kind]


def request(prompt: str = "a cat", **kw: Any) -> GenerationRequest:
    kw.setdefault("provider", "fake")
    kw.setdefault("resolution", "480p")
    kw.setdefault("duration", 5)
    return GenerationRequest(prompt=prompt, **kw)


async def wait_for_state(store: Any, job_id: str, *states: str, tries: int = 10000) -> JobView:
    """Let the engine run until the job reaches one of `states` (a condition, not a timing)."""
    for _ in range(tries):
        job = await store.get_job(job_id)
        if job is not None and job.state.value in states:
            return job
        await asyncio.sleep(0.001)
    job = await store.get_job(job_id)
    raise AssertionError(f"job {job_id} stuck in {job.state if job else None}, wanted {states}")


async def until(predicate: Callable[[], Any], tries: int = 5000, pause: float = 0.001) -> None:
    """Let the engine run until `await predicate()` is true (a condition, not a timing)."""
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(pause)
    raise AssertionError("condition never became true")


def job_dir(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id
