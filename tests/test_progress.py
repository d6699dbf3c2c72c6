"""``kappa.progress``: a live line on a terminal, nothing in a pipe."""

from __future__ import annotations

import io

from kappa.progress import ProgressLine, render


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_with_and_without_a_total() -> None:
    assert render("produced", 250, 1000, 2.0, "CDRs") == (
        "produced  250/1,000 CDRs (25%)  125/s  ETA 0:06"
    )
    assert render("read", 0, 10, 0.0) == "read  0/10 (0%)  0/s  ETA --:--"
    assert render("read", 7200, None, 3600.0) == "read  7,200  2/s  1:00:00"


def test_a_terminal_gets_one_redrawn_line_cleared_at_the_end() -> None:
    out = _Tty()
    with ProgressLine("produced", 100, out=out) as line:
        line.update(10, force=True)
        line.update(20)  # within the redraw interval: not drawn
        line.update(50, force=True)
    text = out.getvalue()
    assert text.count("\r") == 4  # two draws, then the clearing
    assert "10/100" in text
    assert "50/100" in text
    assert "20/100" not in text
    assert "\n" not in text
    assert text.endswith("\r")


def test_a_pipe_gets_nothing() -> None:
    out = io.StringIO()
    with ProgressLine("produced", 100, out=out) as line:
        line.update(50, force=True)
    assert out.getvalue() == ""
