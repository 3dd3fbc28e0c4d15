"""What validation accepts, every gateway module can build, and the body carries every file.

Validation reads the capability table only (bot/validation.py); the gateway modules no longer
re-check requests in `build_body`. These cases hold the two together: a request that passes
intake's rules (the mode's files, bot/roles.py, then `validate`) must build without an error on
the gateway it was validated for, and no file may be left out of the body. Requests are drawn
mostly inside each gateway's table, so many are accepted, and some outside it; a table of one
valid request per mode per gateway makes sure the property never holds vacuously.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import InvalidInput
from bot.models import (
    GenerationRequest,
    MediaKind,
    Mode,
    Ratio,
    Reference,
    RequestedMode,
    Resolution,
    Role,
    SourceKind,
)
from bot.providers.anyfast import AnyfastProvider
from bot.providers.base import Capabilities
from bot.providers.hiapi import HiApiProvider
from bot.providers.magnific import MagnificProvider
from bot.providers.runware import RunwareProvider
from bot.roles import assign_roles, fits
from bot.validation import refuse_invalid, validate

#: Never used to send anything: the cases only build bodies.
_CLIENT = httpx.AsyncClient()
_FILES: dict[MediaKind, Path] = {}
_FORMATS = {MediaKind.IMAGE: ("png", b"\x89PNG fake image bytes"),
            MediaKind.VIDEO: ("mp4", b"\x00\x00\x00\x18ftypmp42 fake video"),
            MediaKind.AUDIO: ("mp3", b"ID3 fake audio bytes")}


@dataclass(frozen=True)
class Builder:
    """One gateway module as these cases see it: its table and its body builder."""

    name: str
    caps: Capabilities
    build: Callable[[GenerationRequest], Any]


def _builders() -> list[Builder]:
    anyfast = AnyfastProvider("k", "http://127.0.0.1:9", client=_CLIENT)
    runware = RunwareProvider("k", "http://127.0.0.1:9", client=_CLIENT)
    magnific = MagnificProvider("k", "http://127.0.0.1:9", client=_CLIENT)
    hiapi = HiApiProvider("k", "http://127.0.0.1:9", client=_CLIENT)
    hook = "https://bot.example.com/callbacks/x/tok"
    return [
        Builder("anyfast-mini", anyfast.capabilities(), anyfast.build_body),
        Builder("anyfast-full", anyfast.capabilities("seedance"), anyfast.build_body),
        Builder("runware", runware.capabilities(),
                lambda r: runware.build_task(r, idempotency_key="job-1", callback_url=hook)),
        Builder("magnific", magnific.capabilities(),
                lambda r: magnific.build_body(r, callback_url=hook)),
        Builder("hiapi", hiapi.capabilities(), lambda r: hiapi.build_body(r, callback_url=hook)),
    ]


BUILDERS = _builders()


@pytest.fixture(scope="module", autouse=True)
def media_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One small file per kind, for references sent as local files (base64)."""
    folder = tmp_path_factory.mktemp("media")
    for kind, (ext, data) in _FORMATS.items():
        _FILES[kind] = folder / f"{kind.value}.{ext}"
        _FILES[kind].write_bytes(data)
    yield
    _FILES.clear()


def reference(kind: MediaKind, how: SourceKind, n: int, role: Role | None = None) -> Reference:
    name = f"{kind.value}{n}"
    if how is SourceKind.PATH:
        path = _FILES[kind]
        return Reference(kind=kind, source=str(path), name=name, local_path=str(path), role=role)
    if how is SourceKind.ASSET:
        return Reference(kind=kind, source=f"asset://asset-{kind.value}-{n}", name=name,
                         role=role)
    if how is SourceKind.DATA_URI:
        data = base64.b64encode(_FORMATS[kind][1]).decode()
        return Reference(kind=kind, source=f"data:application/octet-stream;base64,{data}",
                         name=name, role=role)
    return Reference(kind=kind, source=f"https://media.example.com/{name}.bin", name=name,
                     role=role)


def carried(ref: Reference) -> str:
    """What of `ref` must appear in a body: its URL or asset id, or its bytes in base64."""
    if ref.source_kind is SourceKind.PATH:
        return base64.b64encode(Path(ref.local_path or ref.source).read_bytes()).decode()
    if ref.source_kind is SourceKind.DATA_URI:
        return ref.source.split(",", 1)[1]
    return ref.source


def assert_built(builder: Builder, request: GenerationRequest) -> None:
    """The property: `build` does not refuse, and every file reaches the body."""
    body = json.dumps(builder.build(request))
    for ref in request.references:
        assert carried(ref) in body, f"{builder.name} left {ref.name} out of {body}"


def accepted(request: GenerationRequest, caps: Capabilities) -> bool:
    """Whether intake lets `request` through: its files fit its mode, and validate is quiet."""
    return fits(request.mode, request.references, request.prompt) and not validate(request,
                                                                                   caps)


# ---- requests drawn mostly inside a gateway's table ---------------------------------------

@st.composite
def requests(draw: st.DrawFn, caps: Capabilities, *, intake: bool) -> GenerationRequest:
    """A request for `caps`; `intake`: roles assigned as intake does (for the mode drawn, or
    the one the files imply), else drawn at random. One request in four may step outside the
    table anywhere; the others stay inside it (and are then mostly accepted)."""
    wild = draw(st.sampled_from([False, False, False, True]))

    def pick(inside: Any, every: list[Any]) -> Any:
        choices = sorted(inside, key=str) or every
        return draw(st.sampled_from(every if wild and draw(st.booleans()) else choices))

    refs: list[Reference] = []
    for kind in MediaKind:
        taken = caps.accepts.get(kind, frozenset())
        for n in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3])) if taken or wild else 0):
            refs.append(reference(kind, pick(taken, list(SourceKind)), n + 1))
    prompt = pick(["a fox runs through snow"], ["@image1 walks into @video1", "", "x" * 2001])
    mode = pick(caps.modes, list(Mode))
    asked = draw(st.sampled_from([RequestedMode.AUTO, RequestedMode.AUTO, mode]))
    mode, refs, _ = assign_roles(prompt, refs, asked)
    if not intake:  # made by hand: roles left out, or (wild) any roles at all
        roles = st.sampled_from(list(Role)) if wild else st.none()
        refs = [r.model_copy(update={"role": draw(roles)}) if draw(st.booleans()) or wild
                else r for r in refs]

    def option(offered: bool) -> bool:
        """An option asked for now and then; one the gateway lacks only in a wild request."""
        return draw(st.sampled_from([True, False, False])) and (offered or wild)

    return GenerationRequest(
        prompt=prompt, references=refs, mode=mode,
        resolution=pick(caps.resolutions, list(Resolution)),
        duration=pick(caps.durations, list(range(3, 17))),
        ratio=pick(caps.ratios, list(Ratio)),
        audio=option(caps.audio_generation),
        seed=pick([None, 0, 42, 4_294_967_295] if caps.seed else [None],
                  [-1, 4_294_967_296, 7]),
        camera_fixed=option(caps.camera_fixed),
        watermark=option(caps.watermark),
        web_search=option(caps.web_search and mode is Mode.TEXT),
        return_last_frame=option(caps.last_frame),
        results=pick(range(1, caps.results_per_task + 1), [1, 2, 5]),
    )


HYPOTHESIS = settings(max_examples=200, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.name)
def test_what_intake_accepts_every_gateway_builds(builder: Builder) -> None:
    @HYPOTHESIS
    @given(requests(builder.caps, intake=True))
    def check(request: GenerationRequest) -> None:
        if accepted(request, builder.caps):
            assert_built(builder, request)

    check()


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.name)
def test_what_the_submit_guard_accepts_every_gateway_builds(builder: Builder) -> None:
    """Requests made by hand (any roles at all) that the rules accept build too."""

    @HYPOTHESIS
    @given(requests(builder.caps, intake=False))
    def check(request: GenerationRequest) -> None:
        try:
            refuse_invalid(request, builder.caps)
        except InvalidInput:
            return
        assert_built(builder, request)

    check()


# ---- one valid request per mode per gateway (the property above is never vacuous) ----------

def _valid_request(caps: Capabilities, mode: Mode) -> GenerationRequest:
    how = {kind: sorted(caps.accepts.get(kind, frozenset()), key=str)[:1] for kind in MediaKind}
    files = {
        Mode.TEXT: [],
        Mode.FIRST_FRAME: [MediaKind.IMAGE],
        Mode.FIRST_LAST_FRAME: [MediaKind.IMAGE, MediaKind.IMAGE],
        Mode.REFERENCE: [MediaKind.IMAGE, MediaKind.IMAGE, MediaKind.AUDIO],
        Mode.EDIT: [MediaKind.IMAGE, MediaKind.VIDEO],
        Mode.EXTEND: [MediaKind.VIDEO, MediaKind.VIDEO],
    }[mode]
    refs = [reference(kind, how[kind][0], n + 1) for n, kind in enumerate(files)]
    mode, refs, problems = assign_roles("a fox runs through snow", refs, mode)
    assert problems == []
    return GenerationRequest(
        prompt="a fox runs through snow", references=refs, mode=mode,
        resolution=min(caps.resolutions), duration=min(caps.durations),
        ratio=sorted(caps.ratios, key=str)[0], audio=caps.audio_generation,
    )


@pytest.mark.parametrize(("builder", "mode"),
                         [(b, m) for b in BUILDERS for m in Mode if m in b.caps.modes],
                         ids=lambda v: v.name if isinstance(v, Builder) else v.value)
def test_each_mode_a_gateway_offers_is_accepted_and_built(builder: Builder, mode: Mode) -> None:
    request = _valid_request(builder.caps, mode)
    assert accepted(request, builder.caps), validate(request, builder.caps)
    refuse_invalid(request, builder.caps)
    assert_built(builder, request)
