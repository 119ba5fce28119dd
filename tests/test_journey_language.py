"""The journey language as a marketer meets it: files in, ``FILE:LINE:COL: message`` out.

Each mistake a marketer can make is written into a small YAML file and the test asserts the exact
line, column and words reported. Line and column are counted from the YAML text shown in the test.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from typer.testing import CliRunner

from omnicart.cli import app
from omnicart.journey.catalog import JourneyCatalog
from omnicart.journey.loader import JourneyError, journey_files, load_directory, load_journey, load_template
from omnicart.journey.model import EmailTemplate, SmsTemplate
from omnicart.journey.templates import (
    TemplateError,
    html_to_text,
    money,
    render_template,
    sample_context,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "journeys"

VALID = """\
name: demo
trigger:
  event: checkout_started
  key: cart_id
steps:
  - wait: 1h
  - id: first
    send:
      channel: email
      template: cart_reminder_1
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the shipped templates, as the current directory (so FILE is relative)."""
    shutil.copytree(SHIPPED / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems_of(text: str, name: str = "j.yaml") -> list[str]:
    path = Path(name)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    try:
        load_journey(path)
    except JourneyError as exc:
        return [str(problem) for problem in exc.problems]
    return []


# --- the shipped journeys --------------------------------------------------------------------


def test_shipped_journeys_validate_clean_through_the_real_command() -> None:
    command = Path(sys.executable).with_name("omnicart")
    argv = [str(command), "validate"] if command.exists() else [sys.executable, "-m", "omnicart.cli", "validate"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert "6 journeys valid" in done.stderr


def test_a_broken_copy_of_the_shipped_journeys_exits_1_with_each_problem(tmp_path: Path) -> None:
    copy = tmp_path / "journeys"
    shutil.copytree(SHIPPED, copy)
    cart = copy / "abandoned_cart.yaml"
    text = cart.read_text().replace("  - wait: 1h\n", "  - wiat: 1h\n", 1)
    text = text.replace("template: cart_reminder_1", "template: cart_remindr_1", 1)
    cart.write_text(text)
    lines = text.splitlines()
    wiat = next(n for n, line in enumerate(lines, 1) if "wiat:" in line)
    remindr = next(n for n, line in enumerate(lines, 1) if "cart_remindr_1" in line)

    result = CliRunner().invoke(app, ["validate", str(copy)])

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{cart}:{wiat}:5: unknown step type 'wiat' — did you mean 'wait'?"]
    # Fix the step type: the next problem (a template that does not exist) shows up.
    cart.write_text(text.replace("wiat:", "wait:"))
    result = CliRunner().invoke(app, ["validate", str(copy)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{cart}:{remindr}:17: unknown template 'cart_remindr_1' — did you mean 'cart_reminder_1'?"
    ]


def test_the_shipped_bundles_carry_their_templates() -> None:
    result = load_directory(SHIPPED)
    assert result.problems == []
    assert sorted(result.bundles) == [
        "abandoned_cart", "back_in_stock", "birthday", "browse_abandonment", "price_drop", "win_back"]
    cart = result.bundles["abandoned_cart"]
    assert sorted(cart.templates) == ["cart_last_chance", "cart_reminder_1", "cart_reminder_2",
                                      "cart_reminder_low_stock", "cart_reminder_sms"]
    assert sorted(result.bundles["browse_abandonment"].templates) == ["browse_email", "browse_push"]
    assert len(cart.version) == 16


# --- what the schema says, in a marketer's words ---------------------------------------------


def test_a_valid_journey_has_no_problems(workdir: Path) -> None:
    assert problems_of(VALID) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wiat: 1h
            """,
            ["j.yaml:4:5: unknown step type 'wiat' — did you mean 'wait'?"],
            id="unknown-step-type",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - send:
                  templte: cart_reminder_1
            """,
            ["j.yaml:5:7: unknown key 'templte' in send — did you mean 'template'?"],
            id="unknown-key-no-missing-noise",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wait: 1hr
            """,
            ["j.yaml:4:11: bad duration '1hr': write it like 30m, 1h, 1h30m, 2d or 1w"],
            id="bad-duration",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wait: {after_trigger: 1 day}
            """,
            ["j.yaml:4:27: bad duration '1 day': write it like 30m, 1h, 1h30m, 2d or 1w"],
            id="bad-duration-inside-union",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wait: [1h]
            """,
            [
                "j.yaml:4:11: 'wait' cannot be a list: write a duration like 1h, "
                'or {after_trigger: 24h}, or {until: "09:00"}'
            ],
            id="union-one-message",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wait: {after_trigger: 24h, until: "09:00"}
            """,
            ["j.yaml:4:5: a wait needs exactly one of 'after_trigger' or 'until'"],
            id="wait-two-ways",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - id: reminder
                send:
                  channel: email
            """,
            ["j.yaml:5:5: missing 'template' in send"],
            id="missing-key",
        ),
        pytest.param(
            """\
            trigger: {event: checkout_started}
            steps:
              - exit: done
            """,
            ["j.yaml:1:1: missing 'name' in journey"],
            id="missing-top-level-key",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            quiet_hours:
              mail: {start: "21:00", end: "9:00"}
            steps:
              - exit: done
            """,
            [
                "j.yaml:4:3: unknown channel 'mail' in quiet_hours — did you mean 'email'?",
                "j.yaml:4:31: bad time of day '9:00': write it as 24-hour HH:MM, like 09:00 or 21:30",
            ],
            id="quiet-hours-shape",
        ),
        pytest.param(
            """\
            name: Demo Journey
            enabled: maybe
            trigger: checkout_started
            steps:
              - exit:
            """,
            [
                "j.yaml:1:7: bad journey name 'Demo Journey': use lower_snake_case, like abandoned_cart",
                "j.yaml:2:10: 'enabled' must be true or false, not the text 'maybe'",
                "j.yaml:3:10: 'trigger' must be a mapping with event:, after:, on_date: ... under it, not the text "
                "'checkout_started'",
                "j.yaml:5:5: 'exit' has no value: write it like exit: completed",
            ],
            id="wrong-types",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wait: 1h
                exit: done
            """,
            ["j.yaml:4:5: a step needs exactly one of wait, send, wait_for, branch, split, exit (found: wait, exit)"],
            id="two-kinds-in-one-step",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            name: other
            steps:
              - exit: done
            """,
            ["j.yaml:3:1: duplicate key 'name': it is already set on line 1"],
            id="duplicate-key",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started
            steps:
              - exit: done
            """,
            ["j.yaml:3:6: YAML syntax error: expected ',' or '}', but got ':' (while parsing a flow mapping)"],
            id="yaml-syntax",
        ),
        pytest.param(
            "name: demo\ntrigger:\n\tevent: checkout_started\n",
            [
                "j.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token "
                "(while scanning for the next token); indent with spaces, not tabs"
            ],
            id="yaml-tab",
        ),
        pytest.param(
            "- wait: 1h\n- exit: done\n",
            ["j.yaml:1:1: a journey file must be a mapping of keys such as name:, trigger:, steps:, not a list"],
            id="not-a-mapping",
        ),
        pytest.param("", ["j.yaml:1:1: the file is empty: a journey starts with name:, trigger:, steps:"], id="empty"),
    ],
)
def test_schema_mistakes_are_reported_where_they_are(workdir: Path, text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


# --- what only the validator can say ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - id: remind
                wait: 1h
              - id: remind
                exit: done
            """,
            ["j.yaml:6:9: duplicate step id 'remind': the step on line 4 already uses it"],
            id="duplicate-step-id",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: product_viewed}
            steps:
              - id: look
                wait_for: {event: cart_updated, timeout: 2h, on_event: added, on_timeout: nudge}
              - id: added
                exit: added_to_cart
              - id: nudge
                branch:
                  - if: customer.consent.push
                    goto: push
                  - else: emial
              - id: email
                wait: 1h
                goto: dne
            """,
            [
                "j.yaml:11:15: goto 'push' names no step: the steps are look, added, nudge, email",
                "j.yaml:12:15: else 'emial' names no step — did you mean 'email'?",
                "j.yaml:15:11: goto 'dne' names no step: the steps are look, added, nudge, email",
            ],
            id="dangling-targets",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - wait: 1h
                goto: last
              - id: skipped
                wait: 2h
              - id: also_skipped
                exit: never
              - id: last
                exit: done
              - id: after_exit
                exit: unreachable
            """,
            [
                "j.yaml:6:5: step 'skipped' is never reached: the step before it always goes to 'last', "
                "and no goto, branch, split or wait_for names it",
                "j.yaml:12:5: step 'after_exit' is never reached: the step before it ends the run, "
                "and no goto, branch, split or wait_for names it",
            ],
            id="unreachable-steps",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - id: choose
                branch:
                  - if: customer.consent.sms
                    goto: text
                  - else: mail
              - id: orphan
                exit: never
              - id: text
                exit: sms
              - id: mail
                exit: email
            """,
            [
                "j.yaml:9:5: step 'orphan' is never reached: the branch before it always chooses a step "
                "(it ends with else), and no goto, branch, split or wait_for names it"
            ],
            id="unreachable-after-branch",
        ),
        pytest.param(
            """\
            name: demo
            trigger:
              event: checkout_started
              if: size(event.properties.items) >
            exit_when:
              - event: order_placed
                if: custmer.id == trigger.customer_id
            goal:
              event: order_placed
              within: 7d
              value: event.properties.total +* 2
            steps:
              - send:
                  template: cart_reminder_1
                  skip_if: engagement.clicked > 0 &&& true
            """,
            [
                "j.yaml:4:37: bad condition: it ends too early: something is missing at the end",
                "j.yaml:7:9: bad condition: unknown name 'custmer' — did you mean 'customer'?",
                "j.yaml:11:34: bad value: extraneous input '*'",
                "j.yaml:15:41: bad condition: token recognition error at: '& '",
            ],
            id="conditions",
        ),
        pytest.param(
            """\
            name: demo
            trigger:
              event: checkout_started
              if: event.propertes.total > 50
            steps:
              - send:
                  template: cart_reminder_1
                  skip_if: engagement.clickd > 0 || trigger.sorce == "app"
            """,
            [
                "j.yaml:4:7: bad condition: unknown field 'propertes' of event — did you mean 'properties'?",
                "j.yaml:8:16: bad condition: unknown field 'clickd' of engagement — did you mean 'clicked'?",
            ],
            id="fields-of-fixed-shape",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            steps:
              - send:
                  channel: sms
                  template: cart_reminder_1
                  fallback:
                    - channel: email
                      template: cart_reminder_3
            """,
            [
                "j.yaml:6:17: template 'cart_reminder_1' is for email, but this send is for sms",
                "j.yaml:9:21: unknown template 'cart_reminder_3' — did you mean 'cart_reminder_2'?",
            ],
            id="templates-unknown-and-wrong-channel",
        ),
        pytest.param(
            """\
            name: demo
            default_timezone: Europe/Pariss
            trigger: {event: checkout_started}
            steps:
              - exit: done
            """,
            ["j.yaml:2:19: unknown time zone 'Europe/Pariss' — did you mean 'Europe/Paris'?"],
            id="timezone",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            exit_when:
              - event: order_placd
              - event: loyalty_tier_changed
            steps:
              - wait_for: {event: cart_updatd, timeout: 2h}
            """,
            [
                "j.yaml:4:12: unknown event type 'order_placd' — did you mean 'order_placed'?",
                "j.yaml:5:12: unknown event type 'loyalty_tier_changed': declare it in the tracking plan (plan/)",
                "j.yaml:7:23: unknown event type 'cart_updatd' — did you mean 'cart_updated'?",
            ],
            id="event-type-typos-and-types-outside-the-plan",
        ),
        pytest.param(
            """\
            name: demo
            trigger:
              event: checkout_started
              key: cartid
            steps:
              - exit: done
            """,
            ["j.yaml:4:8: checkout_started events have no property 'cartid' — did you mean 'cart_id'?"],
            id="trigger-key-typo",
        ),
        pytest.param(
            """\
            name: demo
            trigger:
              event: checkout_started
              key: event.properties.cart_id
            steps:
              - exit: done
            """,
            ["j.yaml:4:8: write the property name alone, like key: cart_id"],
            id="trigger-key-path",
        ),
        pytest.param(
            """\
            name: demo
            trigger:
              event: checkout_started
              key: items
            steps:
              - exit: done
            """,
            ["j.yaml:4:8: 'items' is not a single value: a key must be one, like an id"],
            id="trigger-key-list",
        ),
        pytest.param(
            """\
            name: demo
            trigger: {event: checkout_started}
            quiet_hours:
              sms: {start: "21:00", end: "21:00"}
            steps:
              - wait: 0m
              - exit: done
            """,
            [
                "j.yaml:4:30: quiet hours for sms start and end at 21:00: that is no window; give two different times",
                "j.yaml:6:11: bad duration '0m': it must be longer than zero",
            ],
            id="quiet-hours-and-zero-wait",
        ),
    ],
)
def test_journey_checks_beyond_the_schema(workdir: Path, text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_a_custom_trigger_with_any_key_is_allowed(workdir: Path) -> None:
    (workdir / "plan").mkdir()
    declared = "event: loyalty_points_expiring\nproperties: {batch: {type: string}}\n"
    (workdir / "plan" / "loyalty.yaml").write_text(declared)
    text = VALID.replace("event: checkout_started\n  key: cart_id", "event: loyalty_points_expiring\n  key: batch")
    assert problems_of(text) == []


def test_a_template_that_does_not_render_is_reported_at_the_journey_line_and_its_own(workdir: Path) -> None:
    (workdir / "templates" / "typo.yaml").write_text(
        textwrap.dedent(
            """\
            channel: email
            subject: Your cart
            html: |
              <p>Hi {{ customer.first_name | default: "there" }},</p>
              <p>You left {{ cart.itmes | size }} things.</p>
              <a href="{{ unsubscribe_url }}">Unsubscribe</a>
            """
        )
    )
    text = VALID.replace("cart_reminder_1", "typo")
    # "  <p>You left {{ " is 17 characters: 'cart' is on file line 5, column 18.
    template_problem = "templates/typo.yaml:5:18: html: unknown variable 'cart.itmes' — did you mean 'cart.items'?"
    assert problems_of(text) == [f"j.yaml:10:17: template 'typo' does not render: {template_problem}"]

    result = CliRunner().invoke(app, ["validate", "j.yaml", "templates/typo.yaml"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"j.yaml:10:17: template 'typo' does not render: {template_problem}",
        template_problem,
    ]


def template_problems(text: str) -> list[str]:
    """Every problem ``load_template`` reports for a template file with this text."""
    (Path("templates") / "broken.yaml").write_text(text)
    with pytest.raises(JourneyError) as caught:
        load_template(Path("templates/broken.yaml"))
    return [str(p) for p in caught.value.problems]


def test_template_file_mistakes(workdir: Path) -> None:
    assert template_problems("channel: sms\nbody: 'Hi {{ custmer.first_name }}'\nsubject: nope\nmarketing: sure\n") == [
        "templates/broken.yaml:3:1: unknown key 'subject' in template: use one of channel, body, marketing",
        "templates/broken.yaml:4:12: 'marketing' must be true or false, not the text 'sure'",
    ]
    assert template_problems("channel: sms\nbody: 'Hi {{ custmer.first_name }}'\n") == [
        "templates/broken.yaml:2:14: body: unknown variable 'custmer' — did you mean 'customer'?"
    ]
    assert template_problems("channel: email\nsubject: Hi\nhtml: |\n  <p>\n  {% if cart.total %}big\n  </p>\n") == [
        # A problem of the whole field is reported at its first line.
        "templates/broken.yaml:4:3: html: an email needs an unsubscribe link: add {{ unsubscribe_url }}",
        "templates/broken.yaml:5:3: html: '{% if %}' is never closed: add {% endif %}",
    ]
    assert template_problems("channel: mail\nbody: hi\n") == [
        "templates/broken.yaml:1:10: unknown channel 'mail' — did you mean 'email'?"
    ]


def test_two_files_declaring_the_same_journey(workdir: Path) -> None:
    Path("a.yaml").write_text(VALID)
    Path("b.yaml").write_text("# a copy\n" + VALID)
    result = load_directory(Path("."))
    assert list(result.bundles) == ["demo"]
    assert result.files[Path("a.yaml")] is not None and result.files[Path("b.yaml")] is None
    assert [str(p) for p in result.problems] == [
        "b.yaml:2:7: journey name 'demo' is already used by a.yaml: each journey needs its own name"
    ]


# --- the JSON Schema for editors -------------------------------------------------------------


def _yaml_data(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def test_omnicart_schema_is_a_json_schema_that_accepts_shipped_and_rejects_bad_journeys() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"]
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in journey_files(SHIPPED):
        assert list(validator.iter_errors(_yaml_data(path))) == [], path

    good = _yaml_data(SHIPPED / "abandoned_cart.yaml")
    assert list(validator.iter_errors({**good, "steps": [{"wiat": "1h"}]}))
    assert list(validator.iter_errors({**good, "steps": [{"wait": "1hr"}]}))
    assert list(validator.iter_errors({**good, "steps": [{"wait": "1h", "exit": "done"}]}))
    assert list(validator.iter_errors({**good, "steps": [{"branch": [{"if": "true"}]}]}))
    assert list(validator.iter_errors({**good, "quiet_hours": {"mail": {"start": "21:00", "end": "09:00"}}}))
    assert "if" in json.dumps(schema["$defs"]["Trigger"]["properties"])
    assert "else" in schema["$defs"]["BranchCase"]["properties"]


# --- templates -------------------------------------------------------------------------------


def test_money_formats_like_a_shop() -> None:
    assert money(1234.5, "USD") == "$1,234.50"
    assert money("12.5", "EUR") == "€12.50"
    assert money(3, "gbp") == "£3.00"
    assert money(12.5, "SEK") == "SEK\xa012.50"  # CLDR (as ICU): a currency code apart from the digits
    assert money("1,234.505", "USD") == "$1,234.51"
    assert money(None, "USD") == ""


def test_the_cart_email_renders_the_sample_cart_with_prices_escaping_and_restore_link() -> None:
    template = load_template(SHIPPED / "templates" / "cart_reminder_1.yaml")
    context = sample_context(template)
    context["customer"]["first_name"] = "Ann <b>"
    context["cart"]["items"][0]["name"] = 'Tee "Bold" <script>alert(1)</script>'
    parts = render_template(template, context)
    assert parts.subject == "Ann <b>, your cart is saved for you"  # plain text: not escaped
    assert parts.html is not None and parts.text is not None
    assert "Tee &#34;Bold&#34; &lt;script&gt;alert(1)&lt;/script&gt;" in parts.html
    assert "<script>" not in parts.html
    assert "$59.00" in parts.html and "$64.75" in parts.html and "$188.50" in parts.html
    assert f'href="{context["cart"]["restore_url"]}"' in parts.html
    assert context["cart"]["items"][1]["image_url"] in parts.html
    assert f"Return to my cart ({context['cart']['restore_url']})" in parts.text
    assert f"Unsubscribe ({context['unsubscribe_url']})" in parts.text
    assert parts.body is None and parts.title is None


def test_the_other_shipped_templates_render() -> None:
    folder = SHIPPED / "templates"
    sms = load_template(folder / "cart_reminder_sms.yaml")
    assert isinstance(sms, SmsTemplate) and sms.marketing
    body = render_template(sms, sample_context(sms)).body or ""
    assert "Maya" in body and sample_context(sms)["cart"]["restore_url"] in body and len(body) <= 160

    last = load_template(folder / "cart_last_chance.yaml")
    assert isinstance(last, EmailTemplate) and last.discount_percent == 10
    context = sample_context(last)
    html = render_template(last, context).html or ""
    assert context["discount"]["code"] in html and "10% off" in html

    push = load_template(folder / "browse_push.yaml")
    context = sample_context(push, "product_viewed")
    parts = render_template(push, context)
    assert parts.url == context["trigger"]["properties"]["url"]
    assert parts.title == "Still thinking about the Linen Shirt — Sand?"
    assert parts.body == "It's still in stock at $59.00. Tap to take another look."

    for name in ("cart_reminder_1", "cart_reminder_2", "cart_last_chance", "browse_email"):
        email = load_template(folder / f"{name}.yaml")
        trigger = "product_viewed" if name.startswith("browse") else "checkout_started"
        html = render_template(email, sample_context(email, trigger)).html or ""
        assert "/v1/unsubscribe/" in html, name


def test_a_missing_value_is_an_error_unless_it_has_a_default() -> None:
    template = SmsTemplate(channel="sms", body="Hi {{ customer.first_name | default: 'there' }}!\n{{ cart.nope }}")
    context = sample_context(template)
    del context["customer"]["first_name"]
    with pytest.raises(TemplateError) as caught:
        render_template(template, context)
    assert (caught.value.field, caught.value.line, caught.value.column) == ("body", 2, 4)
    assert str(caught.value) == (
        "body, line 2: 'cart.nope' is not in every message's data: "
        'give it a default, like {{ cart.nope | default: "" }}'
    )
    fixed = SmsTemplate(channel="sms", body="Hi {{ customer.first_name | default: 'there' }}!")
    assert render_template(fixed, context).body == "Hi there!"


def test_html_to_text_keeps_words_and_links() -> None:
    html = '<html><head><style>p{color:red}</style></head><body><h1>Hi &amp; welcome</h1>\n<p>Your   <a href="https://x.test/c">cart</a></p><ul><li>One</li><li>Two</li></ul></body></html>'
    assert html_to_text(html) == "Hi & welcome\n\nYour cart (https://x.test/c)\n\n- One\n- Two"


# --- the catalog of published journeys ------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_catalog_serves_by_event_type_and_picks_up_edits(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(SHIPPED, folder)
    clock = _Clock()
    catalog = JourneyCatalog(folder, clock=clock)
    assert [b.journey.name for b in catalog.bundles_for("checkout_started")] == ["abandoned_cart"]
    assert [b.journey.name for b in catalog.bundles_for("product_viewed")] == ["browse_abandonment"]
    assert [b.journey.name for b in catalog.bundles_for("order_placed")] == []
    assert [b.journey.name for b in catalog.bundles_for("date_reached")] == ["birthday", "win_back"]
    before = catalog.all()["abandoned_cart"].version

    cart = folder / "abandoned_cart.yaml"
    cart.write_text(cart.read_text().replace("  - wait: 1h\n", "  - wait: 2h\n", 1))
    assert catalog.all()["abandoned_cart"].version == before  # checked at most once per second
    clock.now += 1.0
    edited = catalog.all()["abandoned_cart"]
    assert edited.version != before and edited.journey.steps[0].wait == "2h"

    browse = folder / "browse_abandonment.yaml"
    browse.write_text(browse.read_text().replace("trigger:\n", "enabled: false\ntrigger:\n", 1))
    clock.now += 1.0
    assert catalog.bundles_for("product_viewed") == []
    assert "browse_abandonment" in catalog.all()


def test_catalog_keeps_the_last_good_version_of_a_file_that_became_invalid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(SHIPPED, folder)
    clock = _Clock()
    catalog = JourneyCatalog(folder, clock=clock)
    good = catalog.all()["abandoned_cart"]
    cart = folder / "abandoned_cart.yaml"
    text = cart.read_text()
    broken = text.replace("  - wait: 1h\n", "  - wiat: 1h\n", 1)
    line = broken.splitlines().index("  - wiat: 1h") + 1

    cart.write_text(broken)
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger="omnicart.journey.catalog"):
        assert catalog.bundles_for("checkout_started") == [good]
    assert [str(p) for p in catalog.problems] == [f"{cart}:{line}:5: unknown step type 'wiat' — did you mean 'wait'?"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"{cart}:{line}:5:" in logged and good.version in logged
    assert "@" not in logged  # no customer data (the sample context has an email address)

    # A broken template makes the journeys using it invalid too: still served as they were.
    template = folder / "templates" / "browse_push.yaml"
    template.write_text(template.read_text().replace("{{ trigger.properties.url", "{{ trigr.properties.url"))
    cart.write_text(text.replace("  - wait: 1h\n", "  - wait: 3h\n", 1))
    clock.now += 1.0
    assert catalog.all()["abandoned_cart"].journey.steps[0].wait == "3h"
    assert catalog.all()["browse_abandonment"] == load_directory(SHIPPED).bundles["browse_abandonment"]
    assert len(catalog.problems) == 1 and "browse_push" in catalog.problems[0].message

    (folder / "browse_abandonment.yaml").unlink()
    clock.now += 1.0
    assert "browse_abandonment" not in catalog.all()
