"""The bench harness's arithmetic: summaries, ratios, target verdicts and n/a bookkeeping (no timing)."""

from __future__ import annotations

import pytest

from bench.stats import Better, Metric, Side, error_reason, evaluate, ratio, summarize
from bench.workloads.base import Samples


def metric(lamina: Side, containerd: Side, better: Better = Better.LOWER, limit: float | None = 1.0) -> Metric:
    return Metric(workload="w", name="m", unit="ms", better=better, limit=limit, lamina=lamina, containerd=containerd)


def test_summarize_median_min_max() -> None:
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.minimum, s.maximum, s.n) == (2.5, 1.0, 10.0, 4)


def test_summarize_refuses_empty() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_is_lamina_over_containerd_medians() -> None:
    assert ratio(summarize([2.0, 4.0, 6.0]), summarize([2.0])) == 2.0
    assert ratio(None, summarize([1.0])) is None
    assert ratio(summarize([1.0]), summarize([0.0])) is None


@pytest.mark.parametrize(("lamina", "containerd", "better", "limit", "met"), [
    ([90.0], [100.0], Better.LOWER, 1.0, True),     # faster
    ([100.0], [100.0], Better.LOWER, 1.0, True),    # equal meets "at or better"
    ([110.0], [100.0], Better.LOWER, 1.0, False),
    ([140.0], [100.0], Better.LOWER, 1.5, True),    # idle RSS within 1.5x
    ([160.0], [100.0], Better.LOWER, 1.5, False),
    ([120.0], [100.0], Better.HIGHER, 1.0, True),   # throughput higher is better
    ([80.0], [100.0], Better.HIGHER, 1.0, False),
])
def test_evaluate_targets(lamina: list[float], containerd: list[float], better: Better, limit: float,
                          met: bool) -> None:
    verdict = evaluate(metric(Side(samples=tuple(lamina)), Side(samples=tuple(containerd)), better, limit))
    assert verdict.met is met
    assert verdict.label == ("met" if met else "NOT met")


def test_evaluate_without_target_or_figure() -> None:
    no_target = evaluate(metric(Side(samples=(1.0,)), Side(samples=(2.0,)), limit=None))
    assert (no_target.ratio, no_target.met, no_target.label) == (0.5, None, "—")
    missing = evaluate(metric(Side(na="n/a: unknown service"), Side(samples=(2.0,))))
    assert (missing.ratio, missing.met, missing.label) == (None, None, "n/a")


def test_side_with_reason_has_no_summary_even_with_samples() -> None:
    assert Side(samples=(1.0,), na="failed after 1 samples: boom").summary is None


def test_error_reason_keeps_the_grpc_description() -> None:
    stderr = "ctr: rpc error: code = Unimplemented desc = unknown service containerd.services.tasks.v1.Tasks\n"
    assert error_reason(stderr) == "unknown service containerd.services.tasks.v1.Tasks"
    assert error_reason("some noise\nctr: image not found\n\n") == "image not found"
    assert error_reason("") == "failed without output"
    assert len(error_reason("x" * 500, limit=40)) == 40


def test_samples_first_failure_is_na_then_side_is_skipped() -> None:
    s = Samples()
    calls: list[str] = []

    def boom() -> float:
        calls.append("lamina")
        raise RuntimeError("not served")

    assert not s.run("lamina", boom)
    assert not s.run("lamina", boom)
    assert s.run("containerd", lambda: [1.0, 2.0])
    assert calls == ["lamina"]
    assert s.side("lamina").na == "n/a: RuntimeError: not served"
    assert s.side("containerd").samples == (1.0, 2.0)


def test_samples_later_failure_says_after_how_many() -> None:
    s = Samples()
    s.run("containerd", lambda: 1.0)
    s.fail("containerd", "gone")
    assert s.side("containerd").na == "failed after 1 samples: gone"
