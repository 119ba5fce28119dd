"""The experiment readout, checked the way an analyst would check it: against the formulas, the
libraries' own numbers, and hand-built analytics rows of customers who come back with new carts."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console
from scipy.stats import norm
from statsmodels.stats.proportion import confint_proportions_2indep

from omnicart.analytics.experiments import (
    HOLDOUT_ARM,
    JOURNEY_ARM,
    ExperimentDesign,
    ExperimentResult,
    Observation,
    analyze,
    customer_observations,
    holdout_design,
    journey_observations,
    minimum_sample_per_arm,
    render,
    split_design,
)
from omnicart.analytics.rows import JourneyActionRow, RecordedAction
from omnicart.journey.model import Journey, Policies

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def arm(name: str, customers: int, conversions: int, value: float = 0.0, currency: str = "EUR") -> list[Observation]:
    """An arm of ``customers``, the first ``conversions`` of them bought for ``value`` each."""
    return [
        Observation(
            customer_id=f"{name}_{i}",
            arm=name,
            exposed_at=START,
            converted=i < conversions,
            revenue={currency: value} if i < conversions and value else {},
        )
        for i in range(customers)
    ]


def design(weights: dict[str, float], mde: float = 0.05, baseline: float = 0.10) -> ExperimentDesign:
    """5 points on a 10 % baseline needs about 690 customers per arm: 1000 per arm is enough."""
    return ExperimentDesign(
        experiment="cart_discount", weights=weights, minimum_detectable_effect=mde, baseline_conversion=baseline
    )


def wilson(count: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval, from its formula."""
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_the_conversion_interval_is_newcombes_hybrid_score_interval() -> None:
    result = analyze(arm("ten_off", 1000, 100) + arm("twenty_off", 1000, 130), design({"ten_off": 1, "twenty_off": 1}))

    (comparison,) = result.comparisons
    assert (comparison.arm, comparison.control) == ("twenty_off", "ten_off")  # no holdout: the first variant
    assert comparison.difference == pytest.approx(0.03)
    assert comparison.relative_lift == pytest.approx(0.30)
    assert comparison.interval is not None
    # statsmodels' own value ...
    low, high = confint_proportions_2indep(130, 1000, 100, 1000, method="newcomb")
    assert comparison.interval.low == pytest.approx(low, abs=5e-5)
    assert comparison.interval.high == pytest.approx(high, abs=5e-5)
    # ... and Newcombe's method 10 by hand, from each arm's Wilson interval.
    z = norm.ppf(0.975)
    (l1, u1), (l2, u2) = wilson(130, 1000, z), wilson(100, 1000, z)
    assert comparison.interval.low == pytest.approx(0.03 - math.sqrt((0.13 - l1) ** 2 + (u2 - 0.10) ** 2), abs=5e-5)
    assert comparison.interval.high == pytest.approx(0.03 + math.sqrt((u1 - 0.13) ** 2 + (0.10 - l2) ** 2), abs=5e-5)
    assert round(comparison.interval.low, 4) == 0.0020 and round(comparison.interval.high, 4) == 0.0581
    # p = 0.036 and the interval excludes 0: the 20 % code wins.
    assert comparison.p_value is not None and 0.03 < comparison.p_value < 0.04
    assert comparison.adjusted_p_value == comparison.p_value  # one comparison: Holm changes nothing
    assert comparison.significant
    assert result.status == "significant"
    assert result.verdict.startswith("twenty_off beats ten_off: +3.0 points conversion (95 % CI +0.2 to +5.8 points")


def test_holm_adjusts_the_smallest_p_value_most_and_keeps_the_order() -> None:
    # Each variant alone would beat the control at p < 0.05; with two comparisons neither survives.
    result = analyze(arm("a", 1000, 100) + arm("b", 1000, 130) + arm("c", 1000, 131), design({"a": 1, "b": 1, "c": 1}))

    b, c = result.comparisons
    assert (b.arm, c.arm) == ("b", "c") and b.control == c.control == "a"
    assert b.p_value is not None and c.p_value is not None
    assert c.p_value < b.p_value < 0.05
    assert c.adjusted_p_value == pytest.approx(2 * c.p_value)  # smallest of 2: times 2
    # The next one is multiplied by 1, but never falls below the one before it.
    assert b.adjusted_p_value == pytest.approx(max(2 * c.p_value, b.p_value))
    assert c.adjusted_p_value is not None and c.adjusted_p_value > 0.05
    assert not b.significant and not c.significant
    assert result.status == "no_difference"


def test_holm_keeps_a_clear_winner_among_three_arms() -> None:
    result = analyze(arm("a", 1000, 100) + arm("b", 1000, 103) + arm("c", 1000, 160), design({"a": 1, "b": 1, "c": 1}))

    b, c = result.comparisons
    assert c.significant and not b.significant
    assert b.p_value is not None and c.p_value is not None
    assert c.adjusted_p_value == pytest.approx(2 * c.p_value)
    assert b.adjusted_p_value == pytest.approx(max(2 * c.p_value, b.p_value))
    assert result.verdict.startswith("c beats a: +6.0 points")
    assert "b " not in result.verdict


def test_a_variant_that_does_worse_is_said_to_lose() -> None:
    result = analyze(arm("a", 1000, 130) + arm("b", 1000, 90), design({"a": 1, "b": 1}))
    assert result.status == "significant"
    assert result.verdict.startswith("b loses to a: -4.0 points conversion")


@pytest.mark.parametrize(("second", "mismatch"), [(800, True), (990, False)])
def test_a_sample_ratio_mismatch_is_flagged_and_overrides_the_verdict(second: int, mismatch: bool) -> None:
    result = analyze(arm("a", 1000, 100) + arm("b", second, 130), design({"a": 50, "b": 50}))

    assert result.sample_ratio.p_value is not None
    assert result.sample_ratio.mismatch is mismatch
    assert (result.sample_ratio.p_value < 0.001) is mismatch
    if mismatch:
        assert result.status == "sample_ratio_mismatch"
        assert result.verdict.startswith("sample ratio mismatch")
        assert any("sample ratio mismatch" in warning for warning in result.warnings)
    else:
        assert result.status == "significant"
        assert result.warnings == []


def test_sample_ratio_follows_the_configured_weights_holdout_included() -> None:
    # 10 % holdout, the rest split evenly: 100 / 450 / 450 is exactly as planned.
    weights = {"a": 45.0, "b": 45.0, HOLDOUT_ARM: 10.0}
    planned = analyze(arm("a", 450, 20) + arm("b", 450, 25) + arm(HOLDOUT_ARM, 100, 4), design(weights))
    assert planned.sample_ratio.p_value == pytest.approx(1.0)
    assert not planned.sample_ratio.mismatch
    # The same total split in thirds is far from the plan.
    even = analyze(arm("a", 333, 20) + arm("b", 333, 25) + arm(HOLDOUT_ARM, 334, 4), design(weights))
    assert even.sample_ratio.mismatch


def test_the_minimum_sample_is_cohens_h_power_formula() -> None:
    plan = design({"a": 1, "b": 1}, mde=0.02, baseline=0.05)
    h = 2 * math.asin(math.sqrt(0.07)) - 2 * math.asin(math.sqrt(0.05))
    by_hand = 2 * ((norm.ppf(0.975) + norm.ppf(0.8)) / h) ** 2
    assert minimum_sample_per_arm(plan) == math.ceil(by_hand)
    assert 2000 < minimum_sample_per_arm(plan) < 2300


def test_no_verdict_and_no_p_value_before_every_arm_has_its_sample() -> None:
    plan = design({"a": 2, "b": 1}, mde=0.02, baseline=0.05)
    needed = minimum_sample_per_arm(plan)
    # The big arm has plenty, the small one has not: a striking difference, and still no verdict.
    nobody = analyze([], plan)
    assert (nobody.status, nobody.verdict) == ("collecting", f"not enough data (0 of {needed:,} per arm)")
    assert nobody.sample_ratio.p_value is None and nobody.comparisons[0].difference is None
    early = analyze(arm("a", 3000, 150) + arm("b", 1500, 150), plan)

    assert early.status == "collecting"
    assert early.verdict == f"not enough data (1,500 of {needed:,} per arm)"
    assert early.smallest_arm == 1500
    assert [(a.customers, a.conversions, a.conversion_rate) for a in early.arms] == [
        (3000, 150, 0.05),
        (1500, 150, 0.1),
    ]
    (comparison,) = early.comparisons
    assert comparison.difference == pytest.approx(0.05)  # rates are shown ...
    assert comparison.interval is None and comparison.p_value is None and comparison.adjusted_p_value is None
    assert comparison.significant is None  # ... inference is not
    assert "p =" not in early.verdict and "beats" not in early.verdict

    later = analyze(arm("a", 2 * needed, 100) + arm("b", needed, 100), plan)
    assert later.status == "significant"
    assert later.comparisons[0].p_value is not None and later.comparisons[0].interval is not None
    assert later.verdict.startswith("b beats a:")


def test_an_equal_flow_gives_no_difference_once_the_sample_is_reached() -> None:
    result = analyze(arm("a", 1000, 100) + arm("b", 1000, 104), design({"a": 1, "b": 1}))
    assert result.status == "no_difference"
    assert result.verdict == "no significant difference from the control at 1,000+ customers per arm"
    assert result.comparisons[0].interval is not None and result.comparisons[0].interval.low < 0


def test_revenue_interval_is_a_reproducible_bootstrap() -> None:
    observations = arm("a", 1000, 100, value=50.0) + arm("b", 1000, 130, value=50.0)
    observations += [Observation(customer_id="b_usd", arm="b", exposed_at=START, converted=True, revenue={"USD": 80.0})]
    plan = design({"a": 1, "b": 1})

    # The same customers in another order (a database promises none) give the very same readout.
    first, second = analyze(observations, plan), analyze(list(reversed(observations)), plan)

    assert first.model_dump_json() == second.model_dump_json()
    b = next(a for a in first.arms if a.arm == "b")
    assert b.revenue_per_customer == {"EUR": pytest.approx(6500 / 1001), "USD": pytest.approx(80 / 1001)}
    eur, usd = first.comparisons[0].revenue
    assert (eur.currency, usd.currency) == ("EUR", "USD")  # never summed across currencies
    assert eur.difference == pytest.approx(6500 / 1001 - 5.0)
    assert eur.interval is not None
    # Close to the normal approximation, as it should be with 1000 customers an arm.
    se = math.sqrt(2500 * 0.13 * 0.87 / 1000 + 2500 * 0.1 * 0.9 / 1000)
    assert eur.interval.low == pytest.approx(eur.difference - 1.96 * se, abs=0.2)
    assert eur.interval.high == pytest.approx(eur.difference + 1.96 * se, abs=0.2)
    assert usd.interval is not None and usd.interval.low >= 0


def test_the_result_is_json_for_the_api_and_a_table_for_the_cli() -> None:
    result = analyze(arm("a", 1000, 100, 40.0) + arm("b", 1000, 130, 40.0), design({"a": 1, "b": 1}))
    assert ExperimentResult.model_validate_json(result.model_dump_json()) == result

    console = Console(record=True, width=160)
    console.print(render(result))
    text = console.export_text()
    for expected in ("cart_discount", "10.00 %", "13.00 %", "4.00 EUR", "+3.0 points", "+30.0 %", "beats"):
        assert expected in text, expected

    early = analyze(arm("a", 10, 1) + arm("b", 10, 3), design({"a": 1, "b": 1}))
    console = Console(record=True, width=160)
    console.print(render(early))
    assert "verdict: not enough data (10 of" in console.export_text()


# -- from analytics rows ------------------------------------------------------------------------


class Rows:
    """Analytics rows as the workflow records them, one customer's actions in time order."""

    def __init__(self) -> None:
        self.rows: list[JourneyActionRow] = []
        self._ids = itertools.count()

    def add(self, customer: str, action: RecordedAction, minutes: int, **fields: object) -> None:
        fields.setdefault("journey", "abandoned_cart")
        self.rows.append(
            JourneyActionRow.model_validate(
                {
                    "action_id": f"act_{next(self._ids)}",
                    "at": START + timedelta(minutes=minutes),
                    "customer_id": customer,
                    "version": "v1",
                    "action": action,
                    **fields,
                }
            )
        )

    def run(
        self,
        customer: str,
        run: str,
        minutes: int,
        variant: str,
        *,
        holdout: str | None = None,
        buys: float | None = None,
    ) -> None:
        """One cart's run: enter, the split, the reminder (or its holdout skip), perhaps a purchase."""
        keys = {"run_id": run, "holdout": holdout}
        self.add(customer, "enter", minutes, **keys)
        self.add(customer, "step", minutes, step="offer", experiment="cart_offer", variant=variant, **keys)
        if holdout:
            self.add(customer, "skip", minutes + 60, step="remind", reason="holdout", variant=variant, **keys)
        else:
            self.add(customer, "send", minutes + 60, step="remind", channel="email", variant=variant, **keys)
        if buys is not None:
            self.add(customer, "convert", minutes + 90, value=buys, currency="EUR", variant=variant, **keys)
        self.add(customer, "exit", minutes + 90, reason="done", **keys)


def test_a_customer_counts_once_however_many_carts_and_holdouts_count_without_a_message() -> None:
    rows = Rows()
    # Ada comes back with three carts, buys twice: one customer, converted, 50 EUR.
    rows.run("ada", "r1", 0, "twenty_off")
    rows.run("ada", "r2", 1000, "twenty_off", buys=20.0)
    rows.run("ada", "r3", 2000, "twenty_off", buys=30.0)
    # Grace is in the holdout: no message ever, still counted, and her purchase counts for the holdout.
    rows.run("grace", "r4", 0, "ten_off", holdout="journey", buys=15.0)
    rows.run("linus", "r5", 0, "ten_off", holdout="global")
    # Alan's rows disagree (they should not): his first exposure's variant stands.
    rows.run("alan", "r6", 0, "ten_off")
    rows.run("alan", "r7", 1000, "twenty_off", buys=9.0)
    # Barbara bought before she ever reached the split, and in another journey: not a conversion.
    rows.add("barbara", "convert", -10, value=99.0, currency="EUR")
    rows.run("barbara", "r8", 0, "ten_off")
    rows.add("barbara", "convert", 30, value=99.0, currency="EUR", journey="browse_abandonment")
    # Edsger entered but left before the split: never exposed, not in the experiment.
    rows.add("edsger", "enter", 0, run_id="r9")
    rows.add("edsger", "exit", 5, run_id="r9", reason="order_placed")
    # Someone else's experiment does not leak in.
    rows.add("ken", "step", 0, step="subject", experiment="subject_line", variant="short")

    observed = {o.customer_id: o for o in customer_observations(rows.rows, "cart_offer")}

    assert set(observed) == {"ada", "grace", "linus", "alan", "barbara"}
    assert (observed["ada"].arm, observed["ada"].converted, observed["ada"].revenue) == (
        "twenty_off",
        True,
        {"EUR": 50},
    )
    assert (observed["grace"].arm, observed["grace"].converted) == (HOLDOUT_ARM, True)
    assert (observed["linus"].arm, observed["linus"].converted) == (HOLDOUT_ARM, False)
    assert (observed["alan"].arm, observed["alan"].converted) == ("ten_off", True)
    assert (observed["barbara"].arm, observed["barbara"].converted, observed["barbara"].revenue) == (
        "ten_off",
        False,
        {},
    )
    assert observed["ada"].exposed_at == START

    plan = design({"ten_off": 45, "twenty_off": 45, HOLDOUT_ARM: 10})
    result = analyze(observed.values(), plan)
    counts = {a.arm: (a.customers, a.conversions) for a in result.arms}
    assert counts == {"ten_off": (2, 1), "twenty_off": (1, 1), HOLDOUT_ARM: (2, 1)}
    assert [(c.arm, c.control) for c in result.comparisons] == [("ten_off", HOLDOUT_ARM), ("twenty_off", HOLDOUT_ARM)]


def test_the_flow_against_its_holdout_is_counted_from_entry() -> None:
    rows = Rows()
    rows.run("ada", "r1", 0, "a", buys=20.0)
    rows.run("ada", "r2", 1000, "a")
    rows.run("grace", "r3", 0, "a", holdout="journey")
    rows.add("linus", "enter", 0, run_id="r4")
    rows.add("linus", "convert", 40, run_id="r4", value=12.5, currency="EUR")
    rows.add("ken", "enter", 0, run_id="r5", journey="browse_abandonment")

    observed = {o.customer_id: o for o in journey_observations(rows.rows, "abandoned_cart")}
    assert {c: (o.arm, o.converted) for c, o in observed.items()} == {
        "ada": (JOURNEY_ARM, True),
        "grace": (HOLDOUT_ARM, False),
        "linus": (JOURNEY_ARM, True),
    }
    with pytest.raises(ValueError, match="2 journeys"):
        journey_observations(rows.rows)
    one_journey = [row for row in rows.rows if row.journey == "abandoned_cart"]
    assert len(journey_observations(one_journey)) == 3


def test_unplanned_arms_are_left_out_and_said() -> None:
    result = analyze(arm("a", 10, 1) + arm("b", 10, 1) + arm("unassigned", 3, 0), design({"a": 1, "b": 1}))
    assert [a.customers for a in result.arms] == [10, 10]
    assert result.warnings == ["3 customers in arm 'unassigned', which the design does not have: left out"]


# -- designs from the journey YAML --------------------------------------------------------------


def journey(**extra: object) -> Journey:
    return Journey.model_validate(
        {
            "name": "abandoned_cart",
            "trigger": {"event": "checkout_started"},
            "steps": [
                {"wait": "1h"},
                {
                    "id": "offer",
                    "split": {
                        "variants": {"ten_off": {"weight": 1}, "twenty_off": {"weight": 3}},
                        "minimum_detectable_effect": "3%",
                        "baseline_conversion": "8%",
                    },
                },
                {"id": "remind", "send": {"template": "reminder"}},
            ],
            **extra,
        }
    )


def test_a_split_design_carries_the_yaml_weights_and_both_holdouts() -> None:
    plan = split_design(journey(holdout="10%"), "offer", Policies(global_holdout="5%"))

    held = 1 - 0.9 * 0.95  # hashed separately, so independent
    assert plan.experiment == "abandoned_cart_offer"
    assert plan.weights == {
        "ten_off": pytest.approx((1 - held) / 4),
        "twenty_off": pytest.approx((1 - held) * 3 / 4),
        HOLDOUT_ARM: pytest.approx(held),
    }
    assert plan.control_arm == HOLDOUT_ARM
    assert plan.minimum_detectable_effect == pytest.approx(0.03)
    assert plan.baseline_conversion == pytest.approx(0.08)
    # The global holdout spares transactional journeys; no holdout at all means variants only.
    transactional = split_design(journey(category="transactional"), "offer", Policies(global_holdout="5%"))
    assert set(transactional.weights) == {"ten_off", "twenty_off"}
    assert transactional.control_arm == "ten_off"
    with pytest.raises(ValueError, match="no split step 'remind'"):
        split_design(journey(), "remind", Policies())


def test_a_holdout_design_needs_someone_held_out() -> None:
    plan = holdout_design(journey(holdout="20%"), Policies())
    assert plan.weights == {JOURNEY_ARM: pytest.approx(0.8), HOLDOUT_ARM: pytest.approx(0.2)}
    with pytest.raises(ValueError, match="holds nobody out"):
        holdout_design(journey(), Policies())
