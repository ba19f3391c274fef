"""wms.progress: plain lines for log files, one per tenth of the work, rounded."""

from __future__ import annotations

import io

from wms.progress import PlainProgress, progress_bar


def test_plain_progress_writes_a_line_per_tenth_and_one_at_the_end():
    out = io.StringIO()
    bar = PlainProgress(
        total=60.2, desc="analysing 2 file(s)", unit="s", file=out, every_seconds=1e9
    )
    for _ in range(301):
        bar.update(0.2)  # floats that do not add up exactly
    bar.set_postfix_str("2/2 files")
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    assert lines[0].startswith("analysing 2 file(s): 6.2/60.2 s, ")
    assert lines[-1].startswith("analysing 2 file(s): 60.2/60.2 s, ")
    assert lines[-1].endswith(", 00:00 left, 2/2 files")


def test_a_resumed_count_starts_where_it_stopped_and_counts_only_new_work():
    out = io.StringIO()
    bar = PlainProgress(total=100, desc="training", unit="steps", initial=50, file=out)
    bar.update(10)
    assert out.getvalue().startswith("training: 60/100 steps, ")
    bar.close()


def test_disabled_progress_prints_nothing(capsys):
    bar = progress_bar(total=10, desc="x", enabled=False)
    bar.update(5)
    bar.close()
    assert capsys.readouterr() == ("", "")
