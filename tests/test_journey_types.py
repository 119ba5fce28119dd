"""Journeys type-checked against the tracking plan: every case the issue found, at FILE:LINE:COL.

Each journey below is the smallest file that shows one mistake; lines and columns are counted in
the YAML shown. The shipped journeys, their templates and the example timeline are checked too.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from omnicart.events import Event
from omnicart.journey.loader import load_directory
from omnicart.plan import load_plan
from omnicart.plan.catalog import BUILT_IN
from tests.test_journey_language import problems_of as journey_problems

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped templates and the repository's plan folder, with the test folder as current directory."""
    shutil.copytree(ROOT / "journeys" / "templates", tmp_path / "templates")
    shutil.copytree(ROOT / "plan", tmp_path / "plan")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems_of(text: str, templates: dict[str, str] | None = None) -> list[str]:
    """The problems of journey ``text`` (as j.yaml), after writing ``templates`` beside it."""
    for name, body in (templates or {}).items():
        Path("templates", f"{name}.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    return journey_problems(text)


def journey(condition_at: str, trigger: str = "checkout_started", exit_event: str = "order_placed") -> str:
    """A journey with ``condition_at`` written as an exit_when condition on line 6, column 9."""
    return f"""\
name: typed
trigger:
  event: {trigger}
exit_when:
  - event: {exit_event}
    if: {condition_at}
steps:
  - exit: done
"""


@pytest.mark.parametrize(
    ("condition", "column", "words"),
    [
        ("customer.consent.pussh", 26, "'customer.consent.pussh' cannot exist: customer.consent has no field "
         "'pussh' — did you mean 'push'?"),
        ("cart.totl > 10.0", 14, "'cart.totl' cannot exist: cart has no field 'totl' — did you mean 'total'?"),
        ('event.properties.ordr_id == "x"', 26, "did you mean 'order_id'?"),
        ("customer.sms_sent_last_7d >= 2", 18, "'customer.sms_sent_last_7d' cannot exist"),
        ('engagement.opened > "0"', 9, "compares a number with text (engagement.opened and \"0\")"),
        ('events.exists(e, e.properties.ordr_id == "x")', 39, "'e.properties.ordr_id' cannot exist"),
        ("event.properties.total > 50.0", 26, "'event.properties.total' may be absent (optional in the tracking "
         "plan of order_placed events): guard it, like has(event.properties.total)"),
    ],
    ids=["consent typo", "cart typo", "property typo", "unknown profile field", "number vs text",
         "inside a macro", "optional unguarded"],
)
def test_a_condition_naming_what_cannot_be_there_is_an_error_at_its_place(
    condition: str, column: int, words: str
) -> None:
    [problem] = problems_of(journey(condition))
    assert problem.startswith(f"j.yaml:6:{column}: bad condition: ")
    assert words in problem


@pytest.mark.parametrize(
    "condition",
    [
        "has(event.properties.total) && event.properties.total > 50.0",
        'events.exists(e, e.properties.order_id == "cart.totl customer.pussh")',  # words in a string
        "customer.consent.push && size(customer.push_tokens) > 0",
        "engagement.opened > 0 && cart.total > 10.0",
    ],
)
def test_guarded_and_well_typed_conditions_pass(condition: str) -> None:
    assert problems_of(journey(f"'{condition}'")) == []


def test_a_guard_checks_its_own_name_for_typos() -> None:
    [problem] = problems_of(journey("has(event.properties.totl)"))
    assert "j.yaml:6:30:" in problem and "did you mean 'total'?" in problem


def test_event_is_not_there_in_a_skip_if() -> None:
    text = """\
name: typed
trigger:
  event: checkout_started
steps:
  - send:
      template: cart_reminder_1
      skip_if: event.properties.cart_id == "x"
"""
    [problem] = problems_of(text)
    assert problem.startswith("j.yaml:7:22: bad condition: there is no event here")


def test_a_condition_starting_with_an_exclamation_mark_says_to_quote_it() -> None:
    [problem] = problems_of(journey("!customer.consent.sms"))
    assert problem == (
        "j.yaml:6:9: a value that starts with '!' means something else to YAML: put the condition or text in "
        "quotes, like if: '!customer.consent.sms' (inside, write \"...\" for text)"
    )
    assert problems_of(journey("'!customer.consent.sms'")) == []


def test_an_event_type_outside_the_plan_is_an_error_and_a_declared_custom_one_is_not() -> None:
    [problem] = problems_of(journey("size(events) > 0", exit_event="product_back_in_stock"))
    assert problem == (
        "j.yaml:5:12: unknown event type 'product_back_in_stock': declare it in the tracking plan (plan/)"
    )
    # plan/wishlist_added.yaml declares a custom event; its properties are typed like built-in ones.
    assert problems_of(journey("event.properties.sku == \"A\"", exit_event="wishlist_added")) == []
    [typo] = problems_of(journey("event.properties.skus == \"A\"", exit_event="wishlist_added"))
    assert "did you mean 'sku'?" in typo


ORDER_THANKS = """\
name: thanks
trigger:
  event: order_placed
steps:
  - send:
      template: thanks
"""


def test_a_template_looping_over_optional_items_of_an_order_is_an_error() -> None:
    template = """\
channel: email
subject: Thanks
html: |
  {% for item in trigger.properties.items %}{{ item.name }}{% endfor %}
  {{ unsubscribe_url }}
"""
    [problem] = problems_of(ORDER_THANKS, {"thanks": template})
    assert problem.startswith("j.yaml:6:17: template 'thanks' does not render: templates/thanks.yaml:4:")
    assert "'trigger.properties.items' may be absent (optional in the tracking plan of order_placed events)" in problem


def test_a_default_does_not_hide_a_typo_in_a_template() -> None:
    template = """\
channel: sms
body: 'Order {{ trigger.properties.ordr_id | default: "" }} is on its way'
"""
    [problem] = problems_of(ORDER_THANKS, {"thanks": template})
    assert "templates/thanks.yaml:2:17: body: 'trigger.properties.ordr_id' cannot exist" in problem
    assert "did you mean 'order_id'?" in problem


def test_a_typo_inside_a_loop_over_the_cart_is_caught() -> None:
    template = """\
channel: sms
body: '{% for item in cart.items %}{{ item.prce | default: 0 }}{% endfor %}'
"""
    [problem] = problems_of(ORDER_THANKS, {"thanks": template})
    assert "'item.prce' cannot exist: item has no field 'prce' — did you mean 'price'?" in problem


def test_guarded_optional_fields_in_a_template_pass() -> None:
    template = """\
channel: sms
body: >-
  {% if trigger.properties.items %}{{ trigger.properties.items | size }} items{% endif %}
  {{ trigger.properties.store_id | default: "online" }}
"""
    assert problems_of(ORDER_THANKS, {"thanks": template}) == []


def test_every_shipped_journey_and_the_example_timeline_keep_the_plan() -> None:
    result = load_directory(ROOT / "journeys")
    assert result.problems == []
    assert sorted(result.bundles) == [
        "abandoned_cart", "back_in_stock", "birthday", "browse_abandonment", "price_drop", "win_back"]
    for line in (ROOT / "examples" / "events.jsonl").read_text().splitlines():
        Event.parse(json.loads(line))  # raises on an event the plan refuses


def test_the_plan_declares_catalog_and_store_events_without_a_customer() -> None:
    plan = load_plan(ROOT / "plan")
    assert {name: plan.events[name].concerns for name in ("product_updated", "store_updated", "order_placed")} == {
        "product_updated": "catalog", "store_updated": "store", "order_placed": "customer"}
    assert not plan.events["price_changed"].needs_customer
    assert all(path.suffix == ".yaml" for path in BUILT_IN.iterdir())
