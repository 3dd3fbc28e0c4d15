"""The Discord layer's replies and cards in every shipped language (bot/i18n, parts `replies`
and `cards`): each builder renders without leftover English for a sample job, a Japanese card
still passes Discord's components-v2 rules (the fake's check), and through the real bot a
German server gets its status message, moderators' card and result card in German while the
requester's private note follows the requester's own language."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.engine import EventKind, JobEvent, JobResult
from bot.i18n import DEFAULT, LANGUAGES, Said
from bot.models import GenerationRequest
from bot.moderation import Forgotten
from bot.service.library import Added, Shelf
from bot.service.privacy import Holdings
from bot.store import JobState, JobView
from bot.store.library import LibraryItem
from cogs.utils.card_texts import MAX_CARD_TEXT, cards_setting_text
from cogs.utils.core import DiscordJobContext
from cogs.utils.finals import draft_buttons
from cogs.utils.layout import result_card, status_card
from cogs.utils.library_texts import added_text, item_embed, shelf_header
from cogs.utils.texts import (
    audit_text,
    forgotten_text,
    holdings_text,
    result_embed,
    review_embed,
    status_text,
)
from cogs.utils.views import video_filename
from tests.e2e.test_cards_e2e import texts
from tests.e2e.test_discord_admin_e2e import button, private_reply
from tests.e2e.test_discord_e2e import FAST, running, video_posts
from tests.e2e.test_moderation_e2e import admin_of, card_with_buttons, configure
from tests.fakes.discord.components_v2 import FLAG_COMPONENTS_V2
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import iter_components
from tests.fakes.discord.world import Upload, World

JOB_ID = "5f1d2e3c-4b5a-4968-8776-a5b4c3d2e1f0"
PROMPT = "qzx vrk"  # no word of any language, so it can't hide or fake a leftover
OTHERS = [lang for lang in LANGUAGES if lang != DEFAULT]
#: Words the translations rightly share with English (loanwords, names, Markdown).
SHARED = {"prompt", "prompts", "status", "final", "seed", "credits", "video", "videos",
          "gateway", "gateways", "remix", "audio", "local", "png", "image", "images", "utc",
          "min", "library", "approve", "reject", "name", "add", "file", "delete", "data",
          "qzx", "vrk", "fox", "nowhere", "discord", "channels", "cdn", "example", "https",
          "attachment", "seedance", "mp4", "jpg", "com", "adaptive", "mib", "kib", "hero",
          "bot", "spoiler", "web"}
#: ... and the words one language shares with English.
ALSO_SAID = {"de": {"button", "text", "frame", "frames", "rest", "credit", "events"},
             "fr": {"position", "quotas", "votes"}}
WORD = re.compile(r"[^\W\d_]{3,}")


def job(*, state: JobState = JobState.DELIVERED, results: int = 2, draft: bool = True,
        moderator: str | None = None, error: str | None = None) -> JobView:
    request = GenerationRequest(prompt=PROMPT, results=results, seed=7, camera_fixed=True,
                                web_search=True, watermark=True)
    return JobView(
        id=JOB_ID, guild_id="1", channel_id="2", user_id="3", role_ids=(), request=request,
        provider="local", model=None, state=state, seq=1, credits_estimate=4 * results,
        credits_charged=4 * results if state is JobState.DELIVERED else 0,
        context={"draft": {"duration": None}} if draft else {}, event_id=None,
        moderator_id=moderator, error_message=error)


def result(n: int = 2) -> JobResult:
    return JobResult(video_paths=tuple(Path(f"/nowhere/{i}.mp4") for i in range(n)), seed=7,
                     credits=4 * n)


def item(pending: bool = False) -> LibraryItem:
    return LibraryItem(id="i1", guild_id="1", name="hero", kind="image", format="png",
                       size=120_000, seconds=None, width=800, height=450, description="",
                       owner_id="3", blob_id="b1", state="pending" if pending else "ready",
                       uses=2, decided_by=None, created_at=1_700_000_000.0, has_thumb=False)


def card_text(card: Any) -> str:
    """The words a card shows: its text displays and its buttons' labels."""
    out = []
    for comp in iter_components(card.to_components()):
        out += [str(comp.get("content") or ""), str(comp.get("label") or ""),
                str(comp.get("description") or "")]
    return "\n".join(out)


def embed_text(embed: Any) -> str:
    data = embed.to_dict()
    parts = [data.get("title", ""), data.get("description", ""),
             data.get("footer", {}).get("text", "")]
    for field in data.get("fields", []):
        parts += [field["name"], field["value"]]
    return "\n".join(parts)


def rendered(locale: str) -> dict[str, str]:
    """A representative of every kind of builder, in `locale`."""
    queued, progress = job(state=JobState.QUEUED), job(state=JobState.GENERATING)
    done = job()
    rejected = job(state=JobState.REJECTED, moderator="9", error=None)
    return {
        "status queued": status_text(queued, JobEvent(EventKind.QUEUED, position=3, eta=90),
                                     locale=locale),
        "status progress": card_text(status_card(
            progress, status_text(progress, JobEvent(EventKind.PROGRESS, percent=40, eta=30),
                                  locale=locale),
            JobEvent(EventKind.PROGRESS, percent=40), final=False, locale=locale)),
        "status posted": status_text(done, JobEvent(EventKind.DELIVERED, reason="5"),
                                     jump_url="https://discord.com/channels/1/2/5",
                                     locale=locale),
        "status cancelled": status_text(
            job(state=JobState.CANCELLED),
            JobEvent(EventKind.CANCELLED, reason=Said("core.event.cancelled")), locale=locale),
        "status retrying": status_text(
            queued, JobEvent(EventKind.RETRYING, reason=Said("core.event.without_audio")),
            locale=locale),
        "result card": card_text(result_card(
            done, result(1), videos=["attachment://a.mp4"], inputs=["attachment://i.jpg"],
            extra=draft_buttons(done, locale), locale=locale)),
        "result embed": embed_text(result_embed(done, result(1), locale=locale)),
        "cards setting": cards_setting_text("default", True, locale),
        "holdings": holdings_text(Holdings(jobs=3, with_prompt=2, unfinished=1, files=4,
                                           bytes=5_000_000, votes=2), locale),
        "forgotten": forgotten_text(Forgotten(jobs=3, files=4, votes=2), locale),
        "library added": added_text(Added(item(pending=True), None, None), locale),
        "library shelf": shelf_header(Shelf([item()], 120_000, 50, 10_000_000), locale),
        "library item": embed_text(item_embed(item(pending=True), None, locale)),
        "moderators' card": embed_text(review_embed(rejected, "review", decided=True,
                                                    locale=locale)),
        "audit": audit_text(rejected, locale=locale),
    }


def words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


@pytest.mark.parametrize("language", OTHERS)
def test_every_builder_speaks_the_language_without_leftover_english(language: str) -> None:
    english, other = rendered("en-US"), rendered(language)
    shared = SHARED | ALSO_SAID.get(language, set())
    leftovers = {name: sorted((words(other[name]) & words(text)) - shared)
                 for name, text in english.items()}
    assert {k: v for k, v in leftovers.items() if v} == {}
    assert all(other[name] != text for name, text in english.items())


def test_english_is_as_before() -> None:
    said = rendered("en-US")
    assert "🕒 queued — position 3, ready in about 1 min 30 s" in said["status queued"]
    assert "-# Draft: the **Final** button on the video makes it bigger, same seed." in (
        said["status posted"])
    assert "Remix" in said["result card"] and "Reroll" in said["result card"]
    assert said["cards setting"].endswith(" Prompts on result cards are hidden behind a spoiler.")
    assert said["holdings"].startswith("I store **3** jobs of yours (all servers): **2** with "
                                       "your prompt and inputs, **4** files on disk")
    assert "1 of them are not finished yet.\nYou cast **2** votes in events" in said["holdings"]
    assert said["forgotten"].endswith("The **2** votes you cast in events were deleted.")


def test_plurals_follow_the_count() -> None:
    one = Holdings(jobs=1, with_prompt=1, unfinished=0, files=1, bytes=10, votes=1)
    assert "**1** job of yours" in holdings_text(one) and "**1** file on" in holdings_text(one)
    assert "**1** Auftrag von dir" in holdings_text(one, "de")
    assert "**1** Datei auf" in holdings_text(one, "de")
    many = Holdings(jobs=2, with_prompt=1, unfinished=0, files=0, bytes=10)
    assert "**0** Dateien" in holdings_text(many, "de")
    assert "**0** fichier sur" in holdings_text(many, "fr")  # French counts 0 as one


def test_a_japanese_card_still_passes_discords_rules() -> None:
    world = World("MTAxNzQ.fake.bot-token")
    guild = world.add_guild()
    channel = next(c.id for c in world.channels.values() if c.guild_id == guild.id)
    the_job = job(results=4)
    long = replace(the_job, request=the_job.request.model_copy(
        update={"prompt": "猫が波に乗る。" * 700}))  # 4,900 characters
    names = [video_filename(JOB_ID, i) for i in range(1, 5)]
    card = result_card(long, result(4), videos=[f"attachment://{n}" for n in names],
                       inputs=["attachment://input1.jpg"], extra=draft_buttons(long, "ja"),
                       spoiler_prompt=True, note="注", locale="ja")
    body = {"components": card.to_components(), "flags": FLAG_COMPONENTS_V2}
    uploads = [Upload(f"files[{i}]", n, None, b"x")
               for i, n in enumerate([*names, "input1.jpg"])]
    message, _ = world.post_message(channel, world.bot, body, uploads,
                                    check_permissions=False)  # refuses what Discord refuses
    stored = iter_components(message.to_dict()["components"])
    shown = [c["content"] for c in stored if c["type"] == 10]
    assert sum(map(len, shown)) <= MAX_CARD_TEXT
    assert "さんの動画" in shown[0] and "本番版" in {c.get("label") for c in stored}
    assert all(len(c.get("label") or "") <= 80 for c in stored)
    status = status_card(the_job, status_text(the_job, locale="ja"), None, final=False,
                         locale="ja")
    world.post_message(channel, world.bot, {"components": status.to_components(),
                                            "flags": FLAG_COMPONENTS_V2}, [],
                       check_permissions=False)


def test_a_jobs_row_keeps_both_languages_and_older_rows_read_as_english() -> None:
    old = DiscordJobContext.of(job())
    assert (old.locale, old.guild_locale) == ("en", "en")
    kept = DiscordJobContext.of(replace(job(), context={
        "locale": "ja", "guild_locale": "de", "status_message_id": "1"}))
    assert (kept.locale, kept.guild_locale) == ("ja", "de")


@pytest.mark.e2e
@pytest.mark.timeout(240)
async def test_a_german_server_sees_german_while_the_requester_reads_their_own(
        tmp_path: Path) -> None:
    async with FakeDiscord() as fake, running(tmp_path, fake, SEEDANCE_RESULT_CARDS="1"):
        fake.guild.locale = "de"
        mods = fake.add_channel("mods")
        admin = admin_of(fake)
        await configure(fake, admin, "moderation", {"mode": "results", "channel": mods.id})

        def ask(prompt: str) -> Any:
            return fake.invoke_slash(fake.guild.id, fake.channel.id, fake.member.user.id,
                                     "video", {"prompt": prompt, **FAST}, locale="ja")

        # Refused by the moderators: the card and the status in German, the reason privately
        # in the requester's Japanese.
        first = await ask("a spooky mansion")
        card = await fake.wait_for(lambda: card_with_buttons(fake, mods), timeout=90,
                                   what="the moderators' card")
        assert card.embeds[0]["title"] == "🛡️ Video zur Prüfung"
        assert {c.get("label") for c in iter_components(card.components)} >= {
            "Freigeben", "Ablehnen"}
        opened = await fake.click(card.id, button(card, "sdm:reject:"), admin.user.id)
        await fake.wait_for(lambda: opened.modal, timeout=30, what="the reason modal")
        await fake.submit_modal(opened, {"reason": "Too scary"}, admin.user.id)
        told = await fake.wait_for(
            lambda: next((m for m in first.followups if m.ephemeral
                          and "Too scary" in m.content), None), timeout=30,
            what="the requester's private note")
        assert "モデレーターに承認されませんでした" in told.content
        status = await fake.wait_for(
            lambda: (o := first.original) is not None and "abgelehnt" in texts(o) and o,
            timeout=30, what="the German rejected status")
        assert "der Grund wurde dir privat geschickt" in texts(status)
        assert "Too scary" not in texts(status)

        # Approved: the result card and its status card in German.
        second = await ask("a paper boat")
        card = await fake.wait_for(
            lambda: next((m for m in fake.messages(mods.id) if m.id != card.id
                          and m.components and m.author.id == fake.bot_user_id), None),
            timeout=90, what="the second moderators' card")
        approved = await fake.click(card.id, button(card, "sdm:approve:"), admin.user.id)
        assert "Approved." in await private_reply(fake, approved)  # the moderator's en-US
        post = await fake.wait_for(lambda: (video_posts(fake) or [None])[0], timeout=90,
                                   what="the result card")
        assert post.flags & FLAG_COMPONENTS_V2
        shown = texts(post)
        assert f"🎬 Video von <@{fake.member.user.id}>" in shown
        assert "**Einstellungen**" in shown and "Credits berechnet" in shown
        labels = {c.get("label") for c in iter_components(post.components)}
        assert {"Neu würfeln", "Verlängern", "Letzten Frame animieren", "Löschen"} <= labels
        done = await fake.wait_for(
            lambda: (o := second.original) is not None and "gepostet" in texts(o) and o,
            timeout=30, what="the German posted status")
        assert "**Status:** ✅ gepostet" in texts(done)
        assert "posted" not in texts(done) and "charged" not in texts(done)


def test_an_engine_retry_note_keeps_the_gateways_words_inside_the_readers_sentence() -> None:
    """The engine's own words around a gateway's reason are said in the server's language;
    the reason itself is the gateway's and stays as it wrote it."""
    note = Said("core.event.retry_in", reason="HTTP 503 from the gateway", seconds="30")
    assert str(note) == "HTTP 503 from the gateway; trying again in 30 s"  # logs, detail
    retrying = status_text(job(state=JobState.QUEUED), JobEvent(EventKind.RETRYING, reason=note),
                           locale="ja")
    assert "HTTP 503 from the gateway。30 秒後に再試行します" in retrying
