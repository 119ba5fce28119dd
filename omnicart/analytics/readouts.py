"""The experiments of one journey, read out from its analytics rows.

A journey can hold two kinds of test at once, and a marketer asks a question of each: "does the
flow beat doing nothing?" (its holdout, or the global one) and "which variant wins?" (each split
step). When a split runs alongside a holdout, its variants are read out twice: each against the
holdout (is the offer worth sending at all) and against each other (is 20 % better than 10 %).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from omnicart.analytics.experiments import (
    HOLDOUT_ARM,
    ExperimentDesign,
    ExperimentResult,
    Observation,
    analyze,
    customer_observations,
    holdout_design,
    holdout_share,
    journey_observations,
    split_design,
)
from omnicart.analytics.rows import JourneyActionRow
from omnicart.journey.model import JourneyBundle


def journey_readouts(rows: Sequence[JourneyActionRow], bundle: JourneyBundle) -> list[ExperimentResult]:
    """Every readout the journey's definition (as published now) calls for, over these rows."""
    rows = [row for row in rows if row.journey == bundle.journey.name]
    return readouts(bundle, lambda: journey_observations(rows, bundle.journey.name),
                    lambda experiment: customer_observations(rows, experiment))


def readouts(
    bundle: JourneyBundle,
    flow_observations: Callable[[], list[Observation]],
    split_observations: Callable[[str], list[Observation]],
) -> list[ExperimentResult]:
    """Every readout the journey's definition calls for, over observations from wherever they come
    (the raw rows, or the report tables: ``omnicart.analytics.rollup_report``): the flow against its
    holdout (``flow_observations``), each split's variants (``split_observations(experiment)``)."""
    journey, policies = bundle.journey, bundle.policies
    held = holdout_share(journey, policies) > 0
    results: list[ExperimentResult] = []
    if held:
        results.append(analyze(flow_observations(), holdout_design(journey, policies)))
    for step_id, step in zip(journey.step_ids(), journey.steps, strict=True):
        if step.split is None:
            continue
        design = split_design(journey, step_id, policies)
        observations = split_observations(design.experiment)
        results.append(analyze(observations, design))
        if held and len(step.split.variants) >= 2:
            head_to_head = _without_holdout(design)
            results.append(analyze([o for o in observations if o.arm != HOLDOUT_ARM], head_to_head))
    return results


def _without_holdout(design: ExperimentDesign) -> ExperimentDesign:
    """The same split, variants only: the first variant is the control the others are compared with."""
    weights = {arm: weight for arm, weight in design.weights.items() if arm != HOLDOUT_ARM}
    return design.model_copy(update={
        "experiment": f"{design.experiment} (variants head to head)", "weights": weights,
        "control": next(iter(weights)),
    })
