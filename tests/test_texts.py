"""What moderators and members read: status, cards and audit entries as pure functions."""

from __future__ import annotations

from dataclasses import replace

from bot.models import GenerationRequest
from bot.store import JobState, JobView
from cogs.utils.texts import audit_text, decision_line, review_embed, status_text

JOB = JobView(id="0f0e0d0c-0b0a-4000-8000-000000000001", guild_id="1", channel_id="2",
              user_id="3", role_ids=(), request=GenerationRequest(prompt="a spooky mansion"),
              provider="local", model=None, state=JobState.AWAITING_APPROVAL, seq=1,
              credits_estimate=7, context={"review": "prompts", "status_message_id": "9"})


def test_a_prompt_waiting_for_review_is_hidden_from_the_public_status() -> None:
    assert "spooky" not in status_text(JOB)
    approved = replace(JOB, state=JobState.QUEUED, moderator_id="5", started_at=None)
    assert "spooky" in status_text(approved)
    refused = replace(JOB, state=JobState.REJECTED, moderator_id="5")
    assert "spooky" not in status_text(refused)
    unreviewed_mode = replace(JOB, context={"review": "results"})
    assert "spooky" in status_text(unreviewed_mode)


def test_decisions_as_moderators_read_them() -> None:
    refused = replace(JOB, state=JobState.REJECTED, moderator_id="5", error_message="too dark")
    assert decision_line(refused, "approval") == "🚫 Rejected by <@5>: too dark"
    later = replace(refused, started_at=10.0)  # the prompt passed; the video was refused
    assert decision_line(later, "approval").startswith("✅ Prompt approved by <@5>")
    assert "then rejected: too dark" in decision_line(later, "approval")
    assert decision_line(later, "review") == "🚫 Rejected by <@5>: too dark"
    cancelled = replace(JOB, state=JobState.CANCELLED)
    assert "Cancelled by the requester" in decision_line(cancelled, "approval")
    embed = review_embed(refused, "approval", event_name="Jam", decided=True)
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Event"] == "Jam" and str(fields["Decision"]).startswith("🚫")
    assert embed.description == "a spooky mansion" and embed.footer.text == f"job {JOB.id}"


def test_audit_entry_is_concise_and_complete() -> None:
    delivered = replace(JOB, state=JobState.DELIVERED, moderator_id="5", credits_charged=7)
    text = audit_text(delivered, jump_url="https://discord.com/channels/1/2/3")
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("✅ **delivered** · <@3> in <#2>")
    assert "approved by <@5>" in lines[3] and "[the video](https://discord.com/channels/1/2/3)" \
        in lines[3] and "7 credits charged" in lines[3]
    rejected = replace(JOB, state=JobState.REJECTED, moderator_id="5", error_message="no")
    assert "rejected by <@5>: no · 7 credits released" in audit_text(rejected)
    forgotten = replace(delivered, forgotten=True, request=GenerationRequest())
    assert "deleted by the requester" in audit_text(forgotten)
