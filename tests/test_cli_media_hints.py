"""What the CLI says about input files the probe can name but not use (run as a subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media_factory import make_svg
from tests.test_cli import run_cli


@pytest.mark.parametrize("name", ["logo.svg", "logo.png"])
def test_svg_image_exits_2_saying_export_png(tmp_path: Path, name: str) -> None:
    make_svg(tmp_path / name)
    result = run_cli("generate", "x", "--image", name, "--out", "out.mp4", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert name in result.stderr and "SVG" in result.stderr and "PNG" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()

