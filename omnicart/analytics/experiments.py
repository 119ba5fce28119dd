"""Experiment readouts: does a variant (or the whole flow) beat its control, and can we tell yet?

A readout is what a careful analyst would hand a marketer, computed from the analytics rows alone:

* **per customer, not per run.** A customer re-enters a journey with every cart; counting runs
  would weigh frequent shoppers many times and break the independence the statistics assume. A
  customer belongs to an experiment from their first exposure (the split step, or the journey's
  entry for a flow-vs-holdout readout), in one arm for good, whether or not a message ever reached
  them: dropping those who got nothing would compare the arms on different people.
* **a sample fixed in advance.** The minimum detectable effect and the baseline fix how many
  customers each arm needs before the test starts. Until every arm has them the readout shows
  counts and rates but no p-value, interval or verdict: reading a test every day and stopping when
  it looks significant ("peeking") finds winners that are not there.
* **guard rails.** A sample-ratio-mismatch check compares who was assigned with the configured
  weights: when it fires, assignment or logging is broken and no difference can be trusted. With
  several variants, the Holm correction keeps the chance of any false winner at alpha.

The statistics are the libraries' own (statsmodels, scipy); this module only chooses them and says
what they mean. It is pure: rows in, a pydantic result out (JSON for the API), and ``render`` for
the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from scipy.stats import bootstrap, chisquare
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    test_proportions_2indep,
)

from omnicart.analytics.rows import JourneyActionRow
from omnicart.journey.model import Journey, Policies, SplitSpec, percent

HOLDOUT_ARM = "holdout"
"""The arm of customers who walk the journey but receive nothing (journey or global holdout)."""
JOURNEY_ARM = "journey"
"""In a flow-vs-holdout readout, the arm of customers who got the journey's messages."""
NO_CURRENCY = "XXX"
"""ISO 4217's code for "no currency": a conversion whose goal gave a value but no currency."""
SAMPLE_RATIO_ALARM = 0.001
"""A chi-square p-value below this means the arms' sizes do not match the weights (SRM)."""
BOOTSTRAP_SEED = 20240808
"""Fixed, so the same rows always give the same revenue interval (a report must be reproducible)."""
BOOTSTRAP_RESAMPLES = 2000
_BOOTSTRAP_CELLS = 4_000_000  # resampled values held at once: bounds memory on large arms


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Observation(_Model):
    """One customer in one experiment: the arm they were assigned and what they did after."""

    customer_id: str
    arm: str
    exposed_at: datetime
    converted: bool
    revenue: dict[str, float] = Field(default_factory=dict, description="Converted value per currency.")


class ExperimentDesign(_Model):
    """What was planned before the test started: arms and their weights, and the effect worth finding."""

    experiment: str
    weights: dict[str, float] = Field(
        min_length=2, description="Relative share of customers per arm, the holdout's included (need not sum to 1)."
    )
    control: str | None = Field(
        default=None, description="The arm every other arm is compared with: the holdout if any, else the first arm."
    )
    minimum_detectable_effect: float = Field(
        gt=0, lt=1, description="Absolute change in conversion rate: 0.02 is 2 points."
    )
    baseline_conversion: float = Field(gt=0, lt=1, description="The control's expected conversion rate.")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentDesign:
        if any(weight <= 0 for weight in self.weights.values()):
            raise ValueError("every arm needs a positive weight")
        if self.control is not None and self.control not in self.weights:
            raise ValueError(f"control {self.control!r} is not one of the arms")
        if self.baseline_conversion + self.minimum_detectable_effect >= 1:
            raise ValueError("baseline_conversion + minimum_detectable_effect must stay below 100%")
        return self

    @property
    def control_arm(self) -> str:
        if self.control is not None:
            return self.control
        return HOLDOUT_ARM if HOLDOUT_ARM in self.weights else next(iter(self.weights))

    def share(self, arm: str) -> float:
        """The fraction of customers this arm should get."""
        return self.weights[arm] / sum(self.weights.values())


def holdout_share(journey: Journey, policies: Policies) -> float:
    """The share of a journey's customers who receive nothing: its own holdout or the global one.

    The two are drawn from separate hashes, so they are independent: 10 % and 5 % hold out
    1 - 0.9 x 0.95 = 14.5 %. The global holdout spares transactional journeys.
    """
    kept = 1.0
    if journey.holdout is not None:
        kept *= 1 - percent(journey.holdout)
    if policies.global_holdout is not None and journey.category == "marketing":
        kept *= 1 - percent(policies.global_holdout)
    return 1 - kept


def split_design(journey: Journey, step_id: str, policies: Policies) -> ExperimentDesign:
    """The design of a journey's split step, as its YAML configured it (holdouts included)."""
    ids = journey.step_ids()
    step = next((s for i, s in zip(ids, journey.steps, strict=True) if i == step_id and s.split is not None), None)
    if step is None or step.split is None:
        raise ValueError(f"journey {journey.name!r} has no split step {step_id!r}")
    split: SplitSpec = step.split
    held = holdout_share(journey, policies)
    total = sum(variant.weight for variant in split.variants.values())
    weights = {name: (1 - held) * variant.weight / total for name, variant in split.variants.items()}
    if held > 0:
        weights[HOLDOUT_ARM] = held
    return ExperimentDesign(
        experiment=split.experiment or f"{journey.name}_{step_id}",
        weights=weights,
        minimum_detectable_effect=percent(split.minimum_detectable_effect),
        baseline_conversion=percent(split.baseline_conversion),
    )


def holdout_design(
    journey: Journey, policies: Policies, *, minimum_detectable_effect: float = 0.02, baseline_conversion: float = 0.05
) -> ExperimentDesign:
    """The design of the flow-vs-holdout comparison of a journey that holds customers out."""
    held = holdout_share(journey, policies)
    if held <= 0:
        raise ValueError(f"journey {journey.name!r} holds nobody out: there is no control to compare with")
    return ExperimentDesign(
        experiment=f"{journey.name}_holdout",
        weights={JOURNEY_ARM: 1 - held, HOLDOUT_ARM: held},
        control=HOLDOUT_ARM,
        minimum_detectable_effect=minimum_detectable_effect,
        baseline_conversion=baseline_conversion,
    )


# -- rows -> one observation per customer -------------------------------------------------------


def _observe(
    rows: Iterable[JourneyActionRow],
    is_exposure: Callable[[JourneyActionRow], bool],
    arm_of: Callable[[JourneyActionRow], str],
) -> list[Observation]:
    """One observation per exposed customer, outcomes counted from their first exposure on.

    Rows are taken in time order (ties keep their given order). Only rows of the exposure's journey
    count: its holdout flag, its conversions.
    """
    ordered = sorted(rows, key=lambda row: row.at)
    first: dict[str, JourneyActionRow] = {}
    for row in ordered:
        if row.customer_id not in first and is_exposure(row):
            first[row.customer_id] = row
    held_out: set[str] = set()
    revenue: dict[str, dict[str, float]] = {customer: {} for customer in first}
    converted: set[str] = set()
    for row in ordered:
        exposure = first.get(row.customer_id)
        if exposure is None or row.journey != exposure.journey:
            continue
        if row.holdout is not None:
            held_out.add(row.customer_id)
        if row.action == "convert" and row.at >= exposure.at:
            converted.add(row.customer_id)
            if row.value is not None:
                currency = row.currency or NO_CURRENCY
                sums = revenue[row.customer_id]
                sums[currency] = sums.get(currency, 0.0) + row.value
    # Built from validated rows, so pydantic's checks would only repeat them (a third of the time).
    return [
        Observation.model_construct(
            customer_id=customer,
            arm=HOLDOUT_ARM if customer in held_out else arm_of(exposure),
            exposed_at=exposure.at,
            converted=customer in converted,
            revenue=revenue[customer],
        )
        for customer, exposure in first.items()
    ]


def customer_observations(rows: list[JourneyActionRow], experiment: str) -> list[Observation]:
    """Everyone assigned in a split experiment, once each, whether or not they got a message.

    Exposure is the first ``step`` row naming the experiment; the arm is ``holdout`` when any of
    the customer's rows in that journey is held out, else the variant of that first exposure
    (assignment is sticky, so later rows agree; if they do not, the first one stands).
    """
    return _observe(
        rows,
        lambda row: row.action == "step" and row.experiment == experiment,
        lambda row: row.variant or "unassigned",
    )


def journey_observations(rows: list[JourneyActionRow], journey: str | None = None) -> list[Observation]:
    """Everyone who entered a journey, arm ``journey`` or ``holdout``: does the flow beat doing nothing?

    ``journey`` may be left out when every row is of one journey.
    """
    if journey is None:
        journeys = {row.journey for row in rows}
        if len(journeys) > 1:
            raise ValueError(f"rows of {len(journeys)} journeys: name the one to read out")
        journey = next(iter(journeys), "")
    return _observe(rows, lambda row: row.action == "enter" and row.journey == journey, lambda _row: JOURNEY_ARM)


# -- the readout --------------------------------------------------------------------------------


class Interval(_Model):
    """A confidence interval: the range of true values the data is compatible with."""

    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


class ArmSummary(_Model):
    """One arm as counted, shown from the first customer on (counts and rates are not inference)."""

    arm: str
    planned_share: float
    customers: int
    conversions: int
    conversion_rate: float | None = Field(description="None while the arm has nobody.")
    revenue_per_customer: dict[str, float] = Field(description="Per currency; never summed across currencies.")


class RevenueDifference(_Model):
    """Revenue per customer against the control, in one currency."""

    currency: str
    difference: float = Field(description="Arm minus control, revenue per customer.")
    interval: Interval | None = Field(
        default=None, description="Bootstrap interval at 1 - alpha; None before the sample."
    )


class Comparison(_Model):
    """One arm against the control. Inference fields stay None until every arm has its sample."""

    arm: str
    control: str
    difference: float | None = Field(description="Arm minus control conversion rate (absolute, 0.03 = 3 points).")
    relative_lift: float | None = Field(description="difference / control rate.")
    interval: Interval | None = Field(
        default=None, description="Newcombe hybrid-score interval of difference, at 1 - alpha."
    )
    p_value: float | None = None
    adjusted_p_value: float | None = Field(default=None, description="Holm-corrected across all comparisons.")
    significant: bool | None = None
    revenue: list[RevenueDifference] = Field(default_factory=list)


class SampleRatioCheck(_Model):
    """Whether the arms got the shares they were configured with: if not, nothing else can be trusted."""

    p_value: float | None = Field(description="Chi-square of assigned counts vs weights; None with nobody yet.")
    mismatch: bool


Status = Literal["collecting", "sample_ratio_mismatch", "significant", "no_difference"]


class ExperimentResult(_Model):
    """The readout: JSON for the API, ``render`` for the CLI. ``verdict`` is the one line to act on."""

    experiment: str
    design: ExperimentDesign
    arms: list[ArmSummary]
    comparisons: list[Comparison]
    sample_ratio: SampleRatioCheck
    minimum_sample_per_arm: int
    smallest_arm: int
    status: Status
    verdict: str
    warnings: list[str] = Field(default_factory=list)


def minimum_sample_per_arm(design: ExperimentDesign) -> int:
    """Customers each arm needs to detect the design's effect with its power, at its alpha (two-sided)."""
    return _sample_size(design.baseline_conversion, design.minimum_detectable_effect, design.alpha, design.power)


@lru_cache(maxsize=256)
def _sample_size(baseline: float, effect: float, alpha: float, power: float) -> int:
    """Kept per design: solving for the sample is a root search, a good part of a page's budget, and
    every readout of the same journey asks the same question."""
    size = proportion_effectsize(baseline + effect, baseline)
    needed = NormalIndPower().solve_power(effect_size=size, alpha=alpha, power=power, ratio=1.0)
    return math.ceil(float(needed))


def newcombe_interval(count: int, nobs: int, control_count: int, control_nobs: int, alpha: float = 0.05) -> Interval:
    """Newcombe's hybrid score interval for the difference of two rates (arm minus control).

    Built from each arm's Wilson interval, it keeps its coverage near the nominal level even for the
    small rates of e-commerce conversions, where the textbook Wald interval is too narrow.
    """
    low, high = confint_proportions_2indep(
        count, nobs, control_count, control_nobs, method="newcomb", compare="diff", alpha=alpha
    )
    return Interval(low=float(low), high=float(high))


def _p_value(count: int, nobs: int, control_count: int, control_nobs: int) -> float:
    """Two-sided score test of equal rates; 1.0 when both arms are all-or-nothing (no evidence)."""
    successes, total = count + control_count, nobs + control_nobs
    if successes in (0, total):
        return 1.0
    result = test_proportions_2indep(count, nobs, control_count, control_nobs, method="score", compare="diff")
    return float(result.pvalue)


def _mean_difference(arm: np.ndarray, control: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(arm, axis=axis) - np.mean(control, axis=axis))


def revenue_interval(arm: npt.ArrayLike, control: npt.ArrayLike, confidence: float = 0.95) -> Interval:
    """A percentile bootstrap interval of the difference in revenue per customer (arm minus control).

    Revenue is mostly zeros with a long tail, so no normal formula fits; resampling customers does.
    The seed is fixed: the same rows always give the same interval.
    """
    arm_values, control_values = np.asarray(arm, dtype=float), np.asarray(control, dtype=float)
    batch = max(1, _BOOTSTRAP_CELLS // max(len(arm_values) + len(control_values), 1))
    result = bootstrap(
        (arm_values, control_values),
        _mean_difference,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=batch,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return Interval(low=float(result.confidence_interval.low), high=float(result.confidence_interval.high))


def _summaries(by_arm: dict[str, list[Observation]], design: ExperimentDesign) -> list[ArmSummary]:
    summaries = []
    for arm, members in by_arm.items():
        conversions = sum(member.converted for member in members)
        currencies = sorted({currency for member in members for currency in member.revenue})
        summaries.append(
            ArmSummary(
                arm=arm,
                planned_share=design.share(arm),
                customers=len(members),
                conversions=conversions,
                conversion_rate=conversions / len(members) if members else None,
                revenue_per_customer={c: _revenue(members, c).mean() for c in currencies},
            )
        )
    return summaries


def _revenue(members: list[Observation], currency: str) -> np.ndarray:
    """Each customer's revenue in one currency, zero for those who spent none in it."""
    return np.array([member.revenue.get(currency, 0.0) for member in members], dtype=float)


def _sample_ratio(summaries: list[ArmSummary]) -> SampleRatioCheck:
    observed = np.array([arm.customers for arm in summaries], dtype=float)
    if observed.sum() == 0:
        return SampleRatioCheck(p_value=None, mismatch=False)
    expected = np.array([arm.planned_share for arm in summaries]) * observed.sum()
    p_value = float(chisquare(observed, f_exp=expected).pvalue)
    return SampleRatioCheck(p_value=p_value, mismatch=p_value < SAMPLE_RATIO_ALARM)


def _compare(
    arm: ArmSummary,
    control: ArmSummary,
    by_arm: dict[str, list[Observation]],
    design: ExperimentDesign,
    infer: bool,
) -> tuple[Comparison, float | None]:
    """The comparison without its Holm-adjusted p-value, and the raw p-value to adjust."""
    if arm.conversion_rate is None or control.conversion_rate is None:
        return Comparison(arm=arm.arm, control=control.arm, difference=None, relative_lift=None), None
    difference = arm.conversion_rate - control.conversion_rate
    lift = difference / control.conversion_rate if control.conversion_rate > 0 else None
    currencies = sorted(set(arm.revenue_per_customer) | set(control.revenue_per_customer))
    revenue = [
        RevenueDifference(
            currency=currency,
            difference=arm.revenue_per_customer.get(currency, 0.0) - control.revenue_per_customer.get(currency, 0.0),
            interval=revenue_interval(
                _revenue(by_arm[arm.arm], currency), _revenue(by_arm[control.arm], currency), 1 - design.alpha
            )
            if infer
            else None,
        )
        for currency in currencies
    ]
    comparison = Comparison(
        arm=arm.arm, control=control.arm, difference=difference, relative_lift=lift, revenue=revenue
    )
    if not infer:
        return comparison, None
    counts = (arm.conversions, arm.customers, control.conversions, control.customers)
    p_value = _p_value(*counts)
    interval = newcombe_interval(*counts, alpha=design.alpha)
    comparison = comparison.model_copy(update={"interval": interval, "p_value": p_value})
    return comparison, p_value


def _holm(comparisons: list[Comparison], p_values: list[float], alpha: float) -> list[Comparison]:
    """Holm-adjust the p-values (a no-op for a single comparison) and decide significance."""
    adjusted = [float(p) for p in multipletests(p_values, alpha=alpha, method="holm")[1]]
    decided = []
    for comparison, p in zip(comparisons, adjusted, strict=True):
        assert comparison.interval is not None
        significant = p < alpha and comparison.interval.excludes_zero()
        decided.append(comparison.model_copy(update={"adjusted_p_value": p, "significant": significant}))
    return decided


def _points(value: float) -> str:
    return f"{value * 100:+.1f} points"


def _span(interval: Interval) -> str:
    return f"{interval.low * 100:+.1f} to {interval.high * 100:+.1f} points"


def _ci(alpha: float) -> str:
    return f"{(1 - alpha) * 100:g} % CI"


def _verdict(
    comparisons: list[Comparison], sample_ratio: SampleRatioCheck, smallest: int, needed: int, alpha: float
) -> tuple[Status, str]:
    if smallest < needed:
        return "collecting", f"not enough data ({smallest:,} of {needed:,} per arm)"
    if sample_ratio.mismatch:
        return (
            "sample_ratio_mismatch",
            f"sample ratio mismatch (p = {sample_ratio.p_value:.2g}): the arms' sizes do not match their "
            "weights, so assignment or logging is broken; do not act on this readout",
        )
    winners = [c for c in comparisons if c.significant]
    if not winners:
        return "no_difference", f"no significant difference from the control at {smallest:,}+ customers per arm"
    lines = []
    for c in winners:
        assert c.difference is not None and c.interval is not None and c.adjusted_p_value is not None
        beats = "beats" if c.difference > 0 else "loses to"
        lines.append(
            f"{c.arm} {beats} {c.control}: {_points(c.difference)} conversion "
            f"({_ci(alpha)} {_span(c.interval)}, Holm p = {c.adjusted_p_value:.2g})"
        )
    return "significant", "; ".join(lines)


def analyze(observations: Iterable[Observation], design: ExperimentDesign) -> ExperimentResult:
    """The readout of one experiment: per arm, per comparison with the control, guard rails, verdict."""
    by_arm: dict[str, list[Observation]] = {arm: [] for arm in design.weights}
    unplanned: dict[str, int] = {}
    for observation in observations:
        if observation.arm in by_arm:
            by_arm[observation.arm].append(observation)
        else:
            unplanned[observation.arm] = unplanned.get(observation.arm, 0) + 1
    for members in by_arm.values():
        members.sort(key=lambda member: member.customer_id)  # the bootstrap resamples by position
    summaries = _summaries(by_arm, design)
    needed = minimum_sample_per_arm(design)
    smallest = min(arm.customers for arm in summaries)
    infer = smallest >= needed
    control = next(arm for arm in summaries if arm.arm == design.control_arm)
    pairs = [_compare(arm, control, by_arm, design, infer) for arm in summaries if arm is not control]
    comparisons = [comparison for comparison, _ in pairs]
    if infer:
        comparisons = _holm(comparisons, [p for _, p in pairs if p is not None], design.alpha)
    sample_ratio = _sample_ratio(summaries)
    warnings = [
        f"{count:,} customers in arm {arm!r}, which the design does not have: left out"
        for arm, count in sorted(unplanned.items())
    ]
    if sample_ratio.mismatch:
        warnings.append(f"sample ratio mismatch: chi-square p = {sample_ratio.p_value:.2g} < {SAMPLE_RATIO_ALARM}")
    status, verdict = _verdict(comparisons, sample_ratio, smallest, needed, design.alpha)
    return ExperimentResult(
        experiment=design.experiment,
        design=design,
        arms=summaries,
        comparisons=comparisons,
        sample_ratio=sample_ratio,
        minimum_sample_per_arm=needed,
        smallest_arm=smallest,
        status=status,
        verdict=verdict,
        warnings=warnings,
    )


# -- the CLI's view -----------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _money(values: dict[str, float]) -> str:
    return ", ".join(f"{amount:,.2f} {currency}" for currency, amount in sorted(values.items())) or "-"


def render(result: ExperimentResult) -> RenderableType:
    """The readout as ``omnicart report`` prints it: arms, comparisons, guard rails, verdict."""
    arms = Table(title=f"Experiment {result.experiment}", title_justify="left")
    for column in ("arm", "planned", "customers", "conversions", "rate", "revenue / customer"):
        arms.add_column(column, justify="left" if column == "arm" else "right")
    for arm in result.arms:
        arms.add_row(
            arm.arm,
            _percent(arm.planned_share),
            f"{arm.customers:,}",
            f"{arm.conversions:,}",
            _percent(arm.conversion_rate),
            _money(arm.revenue_per_customer),
        )
    comparisons = Table(title="Against the control", title_justify="left")
    ci = _ci(result.design.alpha)
    for column in ("arm", "vs", "difference", ci, "lift", "p (Holm)", f"revenue / customer ({ci})"):
        comparisons.add_column(column, justify="left" if column in ("arm", "vs") else "right")
    for c in result.comparisons:
        interval = "-" if c.interval is None else _span(c.interval)
        revenue = "; ".join(
            f"{r.difference:+,.2f} {r.currency}"
            + ("" if r.interval is None else f" ({r.interval.low:+,.2f} to {r.interval.high:+,.2f})")
            for r in c.revenue
        )
        comparisons.add_row(
            c.arm,
            c.control,
            "-" if c.difference is None else _points(c.difference),
            interval,
            "-" if c.relative_lift is None else f"{c.relative_lift * 100:+.1f} %",
            "-" if c.adjusted_p_value is None else f"{c.adjusted_p_value:.3g}" + (" *" if c.significant else ""),
            revenue or "-",
        )
    srm = result.sample_ratio
    lines = [
        Text(
            f"minimum sample: {result.minimum_sample_per_arm:,} customers per arm (smallest arm: "
            f"{result.smallest_arm:,})"
        ),
        Text(
            "sample ratio: "
            + ("-" if srm.p_value is None else f"p = {srm.p_value:.3g}")
            + (" MISMATCH" if srm.mismatch else " ok"),
            style="bold red" if srm.mismatch else "",
        ),
        *(Text(f"warning: {warning}", style="yellow") for warning in result.warnings),
        Text(f"verdict: {result.verdict}", style="bold green" if result.status == "significant" else "bold"),
    ]
    return Group(arms, comparisons, *lines)
