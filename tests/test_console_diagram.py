"""The journey diagram is written on the server from the journey model: every step a node, every
way out of a step an edge, and each node labelled with the report's counts for that step."""

from __future__ import annotations

from omnicart.analytics.report import GroupStats
from omnicart.console.diagram import mermaid_flowchart, step_counts
from omnicart.journey.loader import load_directory
from tests.console_support import ROOT

JOURNEYS = load_directory(ROOT / "journeys").bundles


def edges(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if "-->" in line}


def test_a_wait_for_has_both_outcomes_and_a_branch_each_case() -> None:
    text = mermaid_flowchart(JOURNEYS["browse_abandonment"].journey)
    assert edges(text) == {
        "journey_start --> s_wait_for_cart",
        's_wait_for_cart -- "cart_updated" --> s_added_to_cart',
        's_wait_for_cart -- "timeout" --> s_choose_channel',
        's_choose_channel -- "if customer.consent.push #38;#38; size(customer.push_tokens) #62; 0" --> s_push_nudge',
        's_choose_channel -- "else" --> s_email_nudge',
        "s_push_nudge --> s_done",
        "s_email_nudge --> s_done",
    }
    assert 's_push_nudge["push_nudge: send push: browse_push, else email: browse_email"]' in text
    assert 's_done(["done: exit: completed"])' in text  # an exit ends the path: no edge leaves it


def test_a_split_has_an_edge_per_variant_with_its_weight() -> None:
    text = mermaid_flowchart(JOURNEYS["win_back"].journey)
    assert 's_offer -- "ten_percent (50)" --> s_ten_percent_off' in text
    assert 's_offer -- "twenty_percent (50)" --> s_twenty_percent_off' in text
    assert "s_ten_percent_off --> s_redeem" in text  # its goto
    assert "s_redeem --> journey_end" in text  # the last step runs out into the end


def test_each_node_carries_its_steps_counts() -> None:
    journey = JOURNEYS["abandoned_cart"].journey
    stats = {
        "first_reminder": GroupStats(key="first_reminder", sent=12, opened=5, clicked=2, waiting=1,
                                     skipped={"too_late": 3}, conversions=4),
        "step_1": GroupStats(key="step_1", waiting=7),
    }
    text = mermaid_flowchart(journey, stats)
    assert ('s_first_reminder["first_reminder: send email: cart_reminder_1<br/>waiting 1 · sent 12 · opened 5 · '
            'clicked 2<br/>skipped too_late 3<br/>converted 4"]') in text
    assert 's_step_1["step_1: wait 1h<br/>waiting 7"]' in text
    assert step_counts(journey.steps[0], None) == []  # never reached: no numbers rather than zeros
