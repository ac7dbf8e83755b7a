"""The trigger metrics' arithmetic and their EMF form: cohorts, the time-to-work histogram and its
interpolated median, maturity, and one EMF document per transition with a `trigger` dimension."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.observability import metrics as shared_metrics
from shared.stats import wilson
from shared.trigger_metrics import emf
from shared.trigger_metrics.counters import Cohort, Count, Tally, histogram_bucket
from shared.trigger_metrics.report import cohort_matured, median_hours

COHORT = Cohort(trigger="seat-expansion", ruleset_version="2026-11-23.2", day=date(2026, 11, 25))


def test_a_firing_belongs_to_the_cohort_of_its_trigger_version_and_utc_day() -> None:
    firing = {"trigger": "api-limit", "ruleset_version": "v7", "evaluated_at": "2026-11-25T23:30:00-02:00"}

    assert Cohort.of(firing) == Cohort("api-limit", "v7", date(2026, 11, 26))  # 01:30 UTC next day
    assert Cohort.of(firing).key() == {"pk": {"S": "trigger#api-limit"}, "sk": {"S": "day#2026-11-26#v7"}}


@pytest.mark.parametrize(
    ("hours", "bucket"), [(-1, 0), (0.5, 0), (1, 0), (1.01, 1), (5, 3), (24, 4), (720, 10), (721, 11)]
)
def test_time_to_work_falls_in_the_bucket_whose_upper_bound_it_does_not_pass(
    hours: float, bucket: int
) -> None:
    assert histogram_bucket(hours) == bucket


def test_the_median_is_interpolated_inside_its_bucket() -> None:
    # 4 values: 1 in (0,1], 2 in (4,8], 1 in (8,24]: rank 2 is the first of the (4,8] bucket's two
    histogram = [1, 0, 0, 2, 1] + [0] * 7

    median, at_least = median_hours(histogram)

    assert median == pytest.approx(4 + (2 - 1) / 2 * 4)  # 6.0
    assert at_least is False
    assert median_hours([0] * 12) == (None, False)
    assert median_hours([0] * 11 + [3]) == (720.0, True)  # beyond the last bound: a lower bound


def test_a_cohort_matures_when_its_last_instant_plus_the_horizon_has_passed() -> None:
    day = date(2026, 8, 1)
    assert not cohort_matured(day, datetime(2026, 10, 30, 23, 59, tzinfo=UTC), 90)
    assert cohort_matured(day, datetime(2026, 10, 31, 0, 0, tzinfo=UTC), 90)


def test_the_precision_interval_is_wilsons() -> None:
    interval = wilson(2, 4)
    assert (interval.low, interval.high) == (pytest.approx(0.150, abs=0.001), pytest.approx(0.850, abs=0.001))
    with pytest.raises(ValueError, match="0 of 0"):
        wilson(0, 0)


def test_a_tally_is_one_add_to_its_cohort_item() -> None:
    tally = Tally(COHORT, {Count.WORKED: 1}, hours_to_work=5, amount=("EUR", Decimal("12.50")))

    update = tally.update("plays", 1_900_000_000)["Update"]

    assert update["Key"] == COHORT.key()
    assert update["UpdateExpression"].startswith("ADD #a0 :a0, #a1 :a1, #a2 :a2 SET ")
    names = {
        update["ExpressionAttributeNames"][f"#a{i}"]: update["ExpressionAttributeValues"][f":a{i}"]
        for i in range(3)
    }
    assert names == {"worked": {"N": "1"}, "ttw_03": {"N": "1"}, "amount_EUR": {"N": "12.50"}}
    assert not Tally(COHORT, {})


def test_each_transition_is_an_emf_document_with_a_trigger_dimension_and_shared_metrics_keep_theirs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")

    emf.publish(Tally(COHORT, {Count.FIRINGS: 1, Count.ROUTED: 1}))
    emf.publish(Tally(COHORT, {Count.EXPANDED: 1}, amount=("USD", Decimal("4800"))))

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(documents) == 3  # counts, then expanded, then its amount (with the currency)
    counts, expanded, amount = documents
    assert counts["trigger"] == "seat-expansion"
    assert counts["service"] == "upswing"
    assert counts["TriggerFired"] == [1.0]
    assert counts["TriggerRouted"] == [1.0]
    assert [sorted(d) for d in counts["_aws"]["CloudWatchMetrics"][0]["Dimensions"]] == [
        ["service", "trigger"]
    ]
    assert expanded["TriggerExpanded"] == [1.0]
    assert amount["TriggerExpansionAmount"] == [4800.0]
    assert amount["currency"] == "USD"
    assert sorted(amount["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == [
        "currency",
        "service",
        "trigger",
    ]
    # The functions' shared metrics object gained no dimension
    assert "trigger" not in shared_metrics.dimension_set
