"""What the CLI says about input files the probe can name but not use (run as a subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media_factory import cut_in_half, make_image, make_svg
from tests.test_cli import run_cli


@pytest.mark.parametrize("name", ["logo.svg", "logo.png"])
def test_svg_image_exits_2_saying_export_png(tmp_path: Path, name: str) -> None:
    make_svg(tmp_path / name)
    result = run_cli("generate", "x", "--image", name, "--out", "out.mp4", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert name in result.stderr and "SVG" in result.stderr and "PNG" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_truncated_jpeg_exits_2_naming_the_file(tmp_path: Path) -> None:
    cut_in_half(make_image(tmp_path / "whole.jpg", 640, 480, fmt="JPEG"), tmp_path / "cut.jpg")
    result = run_cli("generate", "x", "--first-frame", "cut.jpg", "--out", "out.mp4",
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "cut.jpg" in result.stderr and "damaged JPEG" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()
