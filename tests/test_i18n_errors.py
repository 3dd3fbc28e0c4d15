"""The core's refusals and problems in every shipped language (issue 16, item 4): each Refusal
the core raises, and the problems validation finds in real files, read in the reader's language
with their params filled and no English sentence left over; str() stays English for logs and
the CLI."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from bot.engine.admission import QueueFull, RateLimited
from bot.engine.cancel import NotAllowed as EngineNotAllowed
from bot.engine.quota import QuotaExceeded, QuotaWindow
from bot.errors import InvalidInput, Problem, Refusal, said_together
from bot.i18n import DEFAULT, LANGUAGES, Said, catalog, say, t
from bot.intake import MediaInput, RequestOptions, prepare
from bot.library_refs import name_problem
from bot.models import MediaKind, Mode, Ratio, Resolution, SourceKind
from bot.moderation import rule_problem
from bot.providers.base import Capabilities
from bot.service.drafts import AlreadyConfirmed, PriceChanged, remix_values
from bot.service.events import ChannelBusy
from bot.service.library import LibraryRefused
from bot.service.library_use import LibraryNotUsable
from bot.service.refusals import (
    BadSetting,
    Blocked,
    BlockedWords,
    EventClosed,
    GatewayUnavailable,
    NotAllowed,
    NothingThere,
    NotInThisChannel,
    ReviewedServer,
    ReviewUnavailable,
    RoleRequired,
    UnfinishedJobs,
    VotingClosed,
)
from cogs.utils.texts import problems_text, refusal_text
from tests.media_factory import cut_in_half, make_audio, make_image, make_svg, make_video

ROOT = Path(__file__).resolve().parents[1]
OTHERS = [lang for lang in LANGUAGES if lang != DEFAULT]
WORD = re.compile(r"[A-Za-z]{2,}")
CODE = re.compile(r"`[^`]*`")


def english_phrases() -> set[str]:
    """Every run of three or more English words in the English catalog's literal text (code
    spans, placeholders and punctuation split it): none may reach a reader of another language."""
    phrases: set[str] = set()
    for text in catalog(DEFAULT).values():
        for form in text.values() if isinstance(text, dict) else [text]:
            for literal, _, _, _ in string.Formatter().parse(form):
                for piece in re.split(r"[;:.,()—?!*\"“”]", CODE.sub("|", literal)):
                    for run in piece.split("|"):
                        run = run.strip()
                        if len(WORD.findall(run)) >= 3 and re.fullmatch(r"[A-Za-z' -]+", run):
                            phrases.add(run)
    return phrases


PHRASES = english_phrases()


def assert_no_english(text: str, language: str) -> None:
    left = sorted(p for p in PHRASES if p in text)
    assert left == [], f"{language}: English left in {text!r}"


def refusals() -> list[Refusal]:
    """One of every Refusal the core raises (families sampled through one of their keys)."""
    window = QuotaWindow("user", "day", used=9, limit=10, resets_at=1_800_000_000.0)
    return [
        Blocked(""), Blocked("spam"), NotInThisChannel(("11", "22")), RoleRequired(("33",)),
        BlockedWords(7), EventClosed("Winter Jam"), VotingClosed("Winter Jam"),
        ReviewUnavailable(), GatewayUnavailable("hiapi", Said("errors.refusal.no_api_key")),
        ReviewedServer(),
        GatewayUnavailable("runware", "HTTP 401: bad key"),
        UnfinishedJobs(1), UnfinishedJobs(3),
        QueueFull("user", 2, 2), QueueFull("server", 5, 5), RateLimited(1), RateLimited(4),
        QuotaExceeded(window, 5),
        QuotaExceeded(QuotaWindow("guild", "month", used=100, limit=100, resets_at=None), 3),
        AlreadyConfirmed("abcdef1234"), PriceChanged(10, 12), ChannelBusy(None),
        EngineNotAllowed(key="errors.job.cancel_not_yours"),
        NotAllowed(key="errors.setting.manage_server"),
        NothingThere(key="errors.library.no_item_near", name="hero", near="`her0`"),
        BadSetting(key="errors.setting.which.add"),
        LibraryRefused(key="errors.library.full", count=20, most=20),
        LibraryNotUsable(key="errors.library.pending", names="`@hero`"),
    ]


def every_refusal_class() -> set[type]:
    seen: set[type] = set()
    todo: list[type] = [Refusal]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("bot.") and sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def test_every_refusal_class_is_sampled() -> None:
    assert every_refusal_class() - {type(r) for r in refusals()} == set()


@pytest.mark.parametrize("language", OTHERS)
def test_every_refusal_reads_in_the_language_with_its_params(language: str) -> None:
    for refusal in refusals():
        assert refusal.key is not None, f"{type(refusal).__name__} has no catalog key"
        said = refusal_text(refusal, language)
        assert said != refusal_text(refusal, DEFAULT), (language, type(refusal).__name__)
        assert_no_english(said, language)
        for value in refusal.params.values():  # every param reaches the reader as it is
            shown = say(value, language) if isinstance(value, Said) else str(value)
            assert shown in said, (language, type(refusal).__name__, shown)


def test_str_stays_english() -> None:
    assert str(RateLimited(2)) == ("You can start 2 videos per minute on this server; try again "
                                   "in a minute. Nothing was spent.")
    assert str(UnfinishedJobs(1)).startswith("You have 1 unfinished job (queued")
    window = QuotaWindow("user", "day", used=9, limit=10, resets_at=1_800_000_000.0)
    assert str(QuotaExceeded(window, 5)) == (
        "This video costs 5 credits but your daily credits: 9 of 10 used, 1 left, resets "
        "2027-01-15 08:00 UTC.")
    assert refusal_text(QuotaExceeded(window, 5)) == (
        "Not enough credits: This video costs 5 credits but your daily credits: 9 of 10 used, 1 "
        "left, resets 2027-01-15 08:00 UTC. It resets 2027-01-15 08:00 UTC. Nothing was spent.")
    ja = refusal_text(QuotaExceeded(window, 5), "ja")
    assert "あなたの 1 日のクレジット" in ja and "2027-01-15 08:00 UTC" in ja
    assert str(window.describe()) == ("your daily credits: 9 of 10 used, 1 left, resets "
                                      "2027-01-15 08:00 UTC")


def test_plurals_follow_the_language() -> None:
    assert say(UnfinishedJobs(1), "de").startswith("Du hast 1 unfertigen Auftrag")
    assert say(UnfinishedJobs(2), "de").startswith("Du hast 2 unfertige Aufträge")
    assert say(QueueFull("user", 1, 1), "fr").startswith("Vous avez déjà 1 vidéo en attente")
    assert say(QueueFull("user", 0, 0), "fr").startswith("Vous avez déjà 0 vidéo en attente")
    assert say(QueueFull("user", 0, 0), "pt-BR").startswith("Você já tem 0 vídeo na fila")


CAPS = Capabilities(
    provider="test", model="m", resolutions=frozenset({Resolution.P480}),
    durations=frozenset({4, 8, 12}), ratios=frozenset({Ratio.R16_9, Ratio.R9_16}),
    modes=frozenset({Mode.TEXT, Mode.REFERENCE, Mode.FIRST_FRAME}),
    audio_generation=False, web_search=False, last_frame=False, seed=False, watermark=False,
    accepts={k: frozenset(SourceKind) for k in MediaKind}, prompt_max_chars=10,
)


async def request_problems(tmp: Path) -> list[Problem]:
    """One request breaking many rules at once, from real files measured from their bytes."""
    wide = make_image(tmp / "wide.png", width=1200, height=200)
    svg = make_svg(tmp / "logo.svg")
    damaged = cut_in_half(make_image(tmp / "full.jpg", fmt="jpeg"), tmp / "half.jpg")
    clip = make_video(tmp / "clip.mp4")
    song = make_audio(tmp / "song.wav")
    missing = MediaInput(str(tmp / "nowhere.png"), name="nowhere.png")
    inputs = [MediaInput(str(p), name=p.name) for p in (wide, svg, damaged, clip, song)]
    options = RequestOptions(prompt="@image5 dances a long dance", duration=5,
                             resolution=Resolution.P720, ratio=Ratio.R1_1, audio=True,
                             web_search=True, watermark=True, return_last_frame=True, seed=3,
                             count=2)
    with pytest.raises(InvalidInput) as caught:
        await prepare([*inputs, missing], options, CAPS, cache_dir=tmp / "cache")
    return caught.value.problems


async def test_request_problems_read_in_every_language(tmp_path: Path) -> None:
    problems = await request_problems(tmp_path)
    keys = {p.key for p in problems}
    assert {"errors.file.image_aspect", "errors.file.svg", "errors.file.damaged",
            "errors.input.no_such_file", "errors.caps.duration", "errors.caps.resolution",
            "errors.caps.ratio", "errors.caps.no_audio", "errors.caps.no_web_search",
            "errors.caps.no_watermark", "errors.caps.no_seed",
            "errors.caps.one_per_task", "errors.prompt.too_long"} <= keys, keys
    english = problems_text(problems)
    assert "• **prompt**: is 27 characters; test (m) takes at most 10, so shorten it." in english
    assert "• **duration**: 5 s is not available on test (m); choose 4 s or 8 s or 12 s." in english
    for language in OTHERS:
        said = problems_text(problems, language)
        assert said.startswith(t(language, "errors.problems.head"))
        assert_no_english(said, language)
        assert said.count("• **") == len(problems)
        for p in problems:
            assert say(p, language) in said
            assert "wide.png" in said and "test (m)" in said
    ja = problems_text(problems, "ja")
    assert "• **長さ**: test (m) では 5 秒は選べません。4 秒、8 秒、12 秒から選んでください。" in ja


@pytest.mark.parametrize("language", OTHERS)
def test_form_names_and_rules_problems_read_in_the_language(language: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        remix_values("", "five", "square")
    said = [name_problem(""), name_problem("two words"), name_problem("image1"),
            name_problem("everyone"), rule_problem("regex", "("), rule_problem("word", "")]
    pairs = [(problems_text(caught.value.problems, language),
              problems_text(caught.value.problems)),
             *((say(s, language), str(s)) for s in said if s is not None)]
    for text, english in pairs:
        assert text != english
        assert_no_english(text, language)
    assert "'five'" in problems_text(caught.value.problems, language)
    assert "`two_words`" in say(name_problem("two words"), language)


def test_problems_said_together_keep_their_order_in_every_language() -> None:
    problems = [Problem.keyed(Said("errors.subject.audio"), "errors.caps.no_audio", who="x (m)"),
                Problem.keyed(Said("errors.subject.watermark"), "errors.caps.no_watermark",
                              who="x (m)")]
    english = BadSetting(key="errors.event.cannot_fix", problems=said_together(problems))
    assert str(english) == ("The event can't fix that: audio: x (m) cannot generate sound; turn "
                            "audio off. watermark: x (m) cannot add a watermark; turn it off.")
    ja = say(english, "ja")
    assert ja.index("音声") < ja.index("透かし")
    assert_no_english(ja, "ja")


REFUSAL_FAMILY = {"Refusal", "NotAllowed", "NothingThere", "BadSetting", "LibraryRefused",
                  "LibraryNotUsable", "Blocked", "GatewayUnavailable"}


def test_no_refusal_or_problem_in_the_core_is_a_bare_english_sentence() -> None:
    """A sentence written into a raise would reach every reader in English: the core's
    Refusals carry a key, and Problems about a person's input are `Problem.keyed` (the gateway
    modules' own model refusals excepted: they are the gateway's words)."""
    bare = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        if path.name.startswith("cli") or path.parent.name == "providers":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            texts = [a for a in node.args if isinstance(a, ast.Constant | ast.JoinedStr)
                     and not (isinstance(a, ast.Constant) and not isinstance(a.value, str))]
            if name in REFUSAL_FAMILY and texts:
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if name == "Problem" and len(node.args) > 1 and texts:
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bare == []


async def test_a_gateways_media_rules_read_in_the_language(tmp_path: Path) -> None:
    caps = Capabilities(provider="hiapi", model="m",
                        accepts={k: frozenset({SourceKind.URL}) for k in MediaKind})
    img = make_image(tmp_path / "cat.png")
    with pytest.raises(InvalidInput) as caught:
        await prepare([MediaInput(str(img), name="cat.png")], RequestOptions(prompt="a cat"),
                      caps, cache_dir=tmp_path / "cache")
    assert "cat.png: hiapi only takes an image as a public https URL" in str(caught.value)
    for language in OTHERS:
        said = problems_text(caught.value.problems, language)
        assert "hiapi" in said and "https" in said
        assert_no_english(said, language)
