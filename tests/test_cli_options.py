"""The CLI's --ratio 9:21, --model, --camera-fixed, --web-search and --watermark: honoured where
the gateway has them, refused (exit 2, nothing sent) the same way /video refuses them."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from bot.cli import main

#: A port nothing listens on: a request that were sent would fail with exit 1, not 2.
NOWHERE = "http://127.0.0.1:9"


def size_of(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return v.width, v.height


def test_9_21_is_rendered_ultra_tall(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tall.mp4"
    code = main(["generate", "a lighthouse, ultra tall", "--out", str(out), "--resolution",
                 "480p", "--ratio", "9:21", "--duration", "4", "--no-audio",
                 "--camera-fixed", "--watermark", "--web-search"])
    assert code == 0
    assert size_of(out) == (432, 992)  # 21:9's 992x432 on its side (bot/models.py)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--provider", "magnific", "--web-search"], "web_search: magnific"),
        (["--provider", "magnific", "--watermark"], "watermark: magnific"),
        (["--provider", "anyfast", "--camera-fixed"], "camera_fixed: anyfast"),
        (["--provider", "anyfast", "--ratio", "9:21"], "ratio: anyfast (seedance-2.0-mini) does "
                                                       "not take 9:21"),
        (["--provider", "runware", "--ratio", "9:21"], "does not take 9:21"),
        (["--provider", "hiapi", "--ratio", "9:21"], "does not take 9:21"),
        (["--provider", "magnific", "--model", "seedance"], "offers only seedance-2-mini"),
        (["--provider", "anyfast", "--resolution", "1080p"], "does not make 1080p"),
    ],
)
def test_an_option_the_gateway_lacks_exits_2_before_sending(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str,
) -> None:
    for name in ("ANYFAST", "MAGNIFIC", "RUNWARE", "HIAPI"):
        monkeypatch.setenv(f"{name}_API_KEY", "test-key-123456")
        monkeypatch.setenv(f"{name}_BASE_URL", NOWHERE)
    out = tmp_path / "never.mp4"
    code = main(["generate", "a lighthouse", "--out", str(out), "--duration", "5",
                 "--resolution", "480p", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "nothing was sent" in err and needle in err
    assert not out.exists()
