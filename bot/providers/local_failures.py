"""The embedded provider's test hook: a prompt containing ``[local:fail:<kind>]`` makes its task
fail (after the simulated delay) the way a real gateway's does, so failure paths can be driven
end to end offline:

* ``audio_moderation`` → `AudioModerationError`, only when the request generates audio; the
  same prompt with audio off succeeds, like the real gateways' audio false positives, so the
  engine's retry-without-audio policy can be tested end to end;
* ``real_face`` → `RealFaceError`; ``moderation`` → `ContentRejectedError`;
* ``task_failed`` → `TaskFailedError`.
"""

from __future__ import annotations

import re

from bot.errors import (
    AudioModerationError,
    ContentRejectedError,
    GatewayError,
    RealFaceError,
    TaskFailedError,
)
from bot.models import GenerationRequest

NAME = "local"
_FAIL_MARKER = re.compile(r"\[local:fail:(audio_moderation|real_face|moderation|task_failed)\]")


def failure_marker(request: GenerationRequest) -> str | None:
    """The failure the prompt asks for, if any (audio moderation only when audio is generated)."""
    match = _FAIL_MARKER.search(request.prompt)
    if match is None:
        return None
    kind = match.group(1)
    if kind == "audio_moderation" and not request.audio:
        return None
    return kind


def failure_error(kind: str) -> GatewayError:
    """The error a real gateway reports for each simulated failure, with its upstream code."""
    why = f"simulated by the [local:fail:{kind}] marker in the prompt"
    if kind == "audio_moderation":
        return AudioModerationError(
            f"the generated audio was flagged as sensitive ({why})",
            provider=NAME, code="OutputAudioSensitiveContentDetected",
        )
    if kind == "real_face":
        return RealFaceError(
            f"an input image may contain a real person ({why})",
            provider=NAME, code="InputImageSensitiveContentDetected.PrivacyInformation",
        )
    if kind == "moderation":
        return ContentRejectedError(
            f"the output video was flagged by content moderation ({why})",
            provider=NAME, code="OutputVideoSensitiveContentDetected",
        )
    return TaskFailedError(f"the task failed ({why})", provider=NAME, code="InternalServiceError")
