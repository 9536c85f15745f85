"""The bench report: table cells, the markdown doc splice, and the JSON record (pure rendering)."""

from __future__ import annotations

import json

from bench import report
from bench.stats import Better, Metric, Side


def _metrics() -> list[Metric]:
    return [
        Metric(workload="run_rm", name="ctr run --rm", unit="ms", better=Better.LOWER,
               lamina=Side(samples=(300.0, 200.0, 250.0)), containerd=Side(samples=(100.0, 125.0))),
        Metric(workload="ingest", name="ingest", unit="MiB/s", better=Better.HIGHER,
               lamina=Side(na="n/a: unknown service x|y"), containerd=Side(samples=(50.0,))),
        Metric(workload="memory", name="RSS loaded", unit="MiB", better=Better.LOWER, limit=None,
               lamina=Side(samples=(80.0,)), containerd=Side(samples=(40.0,))),
    ]


def test_rows_cells() -> None:
    run_rm, ingest, loaded = report.rows(_metrics())
    assert run_rm == ["run_rm", "ctr run --rm", "ms", "250", "200–300", "112", "100–125", "2.22×", "≤ 1.0×",
                      "NOT met", ""]
    assert ingest[3] == "n/a: unknown service x|y" and ingest[7:] == ["—", "≥ 1.0×", "n/a", ""]
    assert loaded[7:] == ["2.00×", "—", "—", ""]


def test_floor_cell_shows_median_and_range() -> None:
    m = Metric(workload="unpack", name="unpack", unit="s", better=Better.LOWER, lamina=Side(samples=(3.0,)),
               containerd=Side(samples=(4.0,)), floor=Side(samples=(2.0, 2.5, 3.0)))
    (row,) = report.rows([m])
    assert row[-1] == "2.50 (2.00–3.00)"
    assert json.loads(report.to_json({}, [m]))["metrics"][0]["floor"]["median"] == 2.5


def test_fmt_significant_digits() -> None:
    assert [report.fmt(v) for v in (1234.4, 12.345, 1.2345)] == ["1234", "12.3", "1.23"]


def test_text_table_aligns_and_cuts_long_cells() -> None:
    table = report.text_table(_metrics(), width=12).splitlines()
    assert table[0].startswith("workload") and set(table[1]) <= {"-", " "}
    assert "n/a: unknow…" in table[3]
    assert len(table) == 2 + 3


def test_markdown_escapes_pipes() -> None:
    md = report.markdown_table(report.HEADER, report.rows(_metrics()))
    assert "x\\|y" in md
    assert md.splitlines()[1] == "|" + "---|" * len(report.HEADER)


def test_verdicts_group_targeted_rows_only() -> None:
    v = report.verdicts(_metrics())
    assert v == {"met": [], "not met": ["run_rm: ctr run --rm"], "no figure": ["ingest: ingest"]}


def test_splice_keeps_hand_written_preamble() -> None:
    first = report.splice(None, "table one")
    assert first.startswith(report.DEFAULT_PREAMBLE.rstrip("\n")) and first.endswith("table one\n")
    edited = first.replace("## Method", "## Method\n\nA note by hand.")
    second = report.splice(edited, "table two")
    assert "A note by hand." in second and "table two" in second and "table one" not in second
    assert second.count(report.MARKER) == 1


def test_scale_table_shows_numbers_and_reasons() -> None:
    rows = [{"running": 20, "lamina": "n/a: no tasks", "containerd": {
        "burst_s": 1.5, "run_rm_ms": 200.0, "daemon_rss_mib": 45.0, "shim_pss_total_mib": 60.0}}]
    md = report.scale_table(rows).splitlines()
    assert md[0].startswith("| running | lamina: burst of 20 (s) | containerd: burst of 20 (s)")
    assert md[2].startswith("| 20 | n/a: no tasks | 1.50 |")


def test_json_record() -> None:
    data = json.loads(report.to_json({"mode": "quick"}, _metrics()))
    first = data["metrics"][0]
    assert data["mode"] == "quick"
    assert first["lamina"]["median"] == 250.0 and first["containerd"]["samples"] == [100.0, 125.0]
    assert first["ratio"] == 2.5 / 1.125 and first["met"] is False
    assert data["metrics"][1]["lamina"]["na"].startswith("n/a:")


def test_footnoted_numbers_each_distinct_reason_once() -> None:
    body = [["a", "n/a: x"], ["b", "n/a: x"], ["c", "failed after 2 samples: y"], ["d", "1.0"]]
    cells, notes = report.footnoted(body)
    assert [r[1] for r in cells] == ["n/a [1]", "n/a [1]", "failed [2]", "1.0"]
    assert notes == ["n/a: x", "failed after 2 samples: y"]


def test_busy_warning_follows_the_load_at_the_start_only() -> None:
    """The end load is the bench's own (100 containers have just run), so it warns of nothing."""
    from bench.report import _busy

    def run(start: str, end: str) -> dict[str, object]:
        return {"machine": {"load average at start": start, "cores": 2}, "load_average_end": end}

    assert not _busy(run("1.2 1.0 0.9", "9.2 4.4 2.6"))
    assert _busy(run("3.5 2.0 1.0", "1.0 1.0 1.0"))
