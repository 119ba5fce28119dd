"""The policies file (``journeys/policies.yaml``) as marketers meet it: checked like a journey,
versioned with the journeys, published and previewed with them.

Line and column are counted from the YAML text shown in each test.
"""

from __future__ import annotations

import json
import logging
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from typer.testing import CliRunner

from omnicart.cli import app
from omnicart.journey.catalog import JourneyCatalog
from omnicart.journey.loader import (
    JourneyError,
    journey_files,
    load_directory,
    load_journey,
    load_policies,
)
from omnicart.journey.model import FrequencyCap, Policies
from omnicart.journey.registry import JourneyRegistry, publish_files
from omnicart.storage import get_engine
from tests.support.bundles import JOURNEYS, browse, flagship

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def problems_of(text: str) -> list[str]:
    """Every problem of a policies file with this text, named as a marketer runs validate: relative."""
    Path("policies.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    try:
        load_policies(Path("policies.yaml"))
    except JourneyError as exc:
        return [str(problem) for problem in exc.problems]
    return []


# --- the shipped file ------------------------------------------------------------------------


def test_the_shipped_policies_cap_sms_and_any_marketing_message_and_hold_no_one_out() -> None:
    policies = load_policies(JOURNEYS / "policies.yaml")
    assert policies.frequency_caps == [
        FrequencyCap(channel="sms", at_most=2, per="7d", when_capped="skip"),
        FrequencyCap(channel="any", at_most=1, per="16h", when_capped="hold", max_hold="1d"),
    ]
    assert policies.global_holdout is None and policies.quiet_hours == {}
    assert flagship().journey.priority == 10 and browse().journey.priority == 0


def test_the_policies_file_is_never_taken_for_a_journey(tmp_path: Path) -> None:
    for name in ("policies.yaml", "welcome.yaml", "winback.yml", "notes.txt"):
        (tmp_path / name).write_text("# nothing\n")
    assert journey_files(tmp_path) == [tmp_path / "welcome.yaml", tmp_path / "winback.yml"]
    assert journey_files(JOURNEYS) == [JOURNEYS / "abandoned_cart.yaml", JOURNEYS / "back_in_stock.yaml",
                                      JOURNEYS / "birthday.yaml", JOURNEYS / "browse_abandonment.yaml",
                                      JOURNEYS / "price_drop.yaml", JOURNEYS / "win_back.yaml"]


def test_every_journey_of_a_folder_carries_the_folders_policies() -> None:
    policies = load_policies(JOURNEYS / "policies.yaml")
    result = load_directory(JOURNEYS)
    assert result.problems == []
    assert [bundle.policies for bundle in result.bundles.values()] == [policies] * len(result.bundles)
    assert len(result.bundles) == 6
    assert flagship().policies == policies  # one journey loaded on its own gets them too


def test_a_folder_without_policies_file_has_no_policies(tmp_path: Path) -> None:
    shutil.copytree(JOURNEYS / "templates", tmp_path / "templates")
    shutil.copy(JOURNEYS / "abandoned_cart.yaml", tmp_path)
    assert load_journey(tmp_path / "abandoned_cart.yaml").policies == Policies()


def test_a_policies_file_of_comments_only_sets_no_policy(in_tmp_path: None) -> None:
    assert problems_of("# global_holdout: 5%\n") == []
    assert load_policies(Path("policies.yaml")) == Policies()


# --- mistakes, where they are ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            frequency_caps:
              - channel: sms
                at_most: 2
                pr: 7d
            """,
            ["policies.yaml:4:5: unknown key 'pr' in frequency cap — did you mean 'per'?"],
            id="unknown-key-in-a-cap",
        ),
        pytest.param(
            """\
            frequency_cap:
              - {channel: sms, at_most: 2, per: 7d}
            """,
            ["policies.yaml:1:1: unknown key 'frequency_cap' in policies — did you mean 'frequency_caps'?"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            """\
            frequency_caps:
              - channel: sms
                at_most: 2
                per: 7 days
            """,
            ["policies.yaml:4:10: bad duration '7 days': write it like 30m, 1h, 1h30m, 2d or 1w"],
            id="bad-duration",
        ),
        pytest.param(
            """\
            frequency_caps:
              - {channel: any, at_most: 1, per: 16h, when_capped: hold, max_hold: 0h}
            """,
            ["policies.yaml:2:71: bad duration '0h': it must be longer than zero"],
            id="zero-duration",
        ),
        pytest.param(
            """\
            frequency_caps:
              - channel: sms
                at_most: 0
                per: 7d
            """,
            ["policies.yaml:3:14: 'at_most' must be at least 1, not 0"],
            id="at-most-zero",
        ),
        pytest.param(
            """\
            frequency_caps:
              - channel: emial
                at_most: 1
                per: 1d
            """,
            ["policies.yaml:2:14: unknown channel 'emial' — did you mean 'email'?"],
            id="channel-typo",
        ),
        pytest.param(
            """\
            frequency_caps:
              - channel: fax
                at_most: 1
                per: 1d
            """,
            ["policies.yaml:2:14: unknown channel 'fax': use 'email', 'sms', 'push', 'whatsapp' or 'any'"],
            id="channel-that-does-not-exist",
        ),
        pytest.param(
            """\
            frequency_caps:
              - {channel: sms, at_most: 1, per: 1d, when_capped: wait}
            """,
            ["policies.yaml:2:54: 'when_capped' cannot be 'wait': use 'skip' or 'hold'"],
            id="when-capped-neither-skip-nor-hold",
        ),
        pytest.param(
            """\
            frequency_caps:
              - channel: sms
                at_most: 2
                per: 7d
              - channel: any
                at_most: 1
                per: 16h
              - channel: sms
                at_most: 3
                per: 1w
            """,
            ["policies.yaml:8:5: sms messages per 1w are already capped by the frequency cap on line 2: keep one"],
            id="two-caps-for-one-channel-and-window",
        ),
        pytest.param(
            """\
            frequency_caps:
              - {at_most: 1, per: 16h}
              - {channel: any, at_most: 2, per: 16h, when_capped: hold}
            """,
            [
                "policies.yaml:3:5: marketing messages on any channel per 16h are already capped by the "
                "frequency cap on line 2: keep one"
            ],
            id="two-caps-across-channels-for-one-window",
        ),
        pytest.param(
            "global_holdout: 10\n",
            ["policies.yaml:1:17: bad percentage '10' in 'global_holdout': write it like 10% or 2.5%, at most 100%"],
            id="percent-without-sign",
        ),
        pytest.param(
            "global_holdout: 100.5%\n",
            ["policies.yaml:1:17: bad percentage '100.5%': at most 100%"],
            id="percent-over-100",
        ),
        pytest.param(
            """\
            quiet_hours:
              sms: {start: "21:00", end: "09:00"}
              fxa: {start: "21:00", end: "09:00"}
            """,
            ["policies.yaml:3:3: unknown channel 'fxa' in quiet_hours: use 'email', 'sms', 'push' or 'whatsapp'"],
            id="quiet-hours-for-an-unknown-channel",
        ),
        pytest.param(
            """\
            quiet_hours:
              sms: {start: "21:00", end: "21:00"}
            """,
            [
                "policies.yaml:2:30: quiet hours for sms start and end at 21:00: that is no window; "
                "give two different times"
            ],
            id="quiet-hours-that-are-no-window",
        ),
        pytest.param(
            "- channel: sms\n",
            [
                "policies.yaml:1:1: a policies file must be a mapping of keys such as frequency_caps:, "
                "global_holdout:, quiet_hours:, not a list"
            ],
            id="a-list-instead-of-a-mapping",
        ),
        pytest.param(
            "global_holdout: 5%\nglobal_holdout: 10%\n",
            ["policies.yaml:2:1: duplicate key 'global_holdout': it is already set on line 1"],
            id="duplicate-key",
        ),
    ],
)
def test_policy_mistakes_are_reported_at_their_line_and_column(
    in_tmp_path: None, text: str, expected: list[str]
) -> None:
    assert problems_of(text) == expected


def test_a_folder_with_two_policies_files_has_no_valid_journey(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, folder)
    shutil.copy(folder / "policies.yaml", folder / "policies.yml")
    result = load_directory(folder)
    assert result.bundles == {}
    assert [str(p) for p in result.problems] == [
        f"{folder / 'policies.yml'}:1:1: {folder / 'policies.yaml'} already holds this folder's policies: keep one file"
    ]


# --- versioned with the journeys -------------------------------------------------------------


def _versions(folder: Path) -> dict[str, str]:
    result = load_directory(folder)
    assert result.problems == []
    return {name: bundle.version for name, bundle in result.bundles.items()}


def test_editing_only_the_policies_makes_a_new_version_of_every_journey(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, folder)
    policies = folder / "policies.yaml"
    text = policies.read_text()
    before = _versions(folder)

    policies.write_text(text + "# a note for the team changes no rule\n")
    assert _versions(folder) == before

    policies.write_text(text.replace("at_most: 2", "at_most: 3"))
    edited = _versions(folder)
    assert sorted(edited) == [
        "abandoned_cart", "back_in_stock", "birthday", "browse_abandonment", "price_drop", "win_back"]
    assert all(edited[name] != before[name] for name in before)

    policies.write_text(text)  # content-addressed: the same rules are the same versions again
    assert _versions(folder) == before
    policies.unlink()
    assert all(version != before[name] for name, version in _versions(folder).items())


def test_validate_checks_the_policies_of_a_folder_and_the_policies_file_alone(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, folder)
    policies = folder / "policies.yaml"
    text = policies.read_text()
    policies.write_text(text.replace("per: 16h", "per: 16 hours"))
    line = policies.read_text().splitlines().index("    per: 16 hours") + 1
    expected = [f"{policies}:{line}:10: bad duration '16 hours': write it like 30m, 1h, 1h30m, 2d or 1w"]

    for target in (folder, policies):
        result = CliRunner().invoke(app, ["validate", str(target)])
        assert result.exit_code == 1
        assert result.stdout.splitlines() == expected
    assert load_directory(folder).bundles == {}  # no journey goes out without its policies

    policies.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(policies)])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == "1 policies file valid"
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert result.exit_code == 0
    assert result.stderr.strip() == "6 journeys valid, 14 templates valid, 1 policies file valid"


def test_omnicart_schema_policies_accepts_the_shipped_file_and_rejects_mistakes() -> None:
    result = CliRunner().invoke(app, ["schema", "--policies"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(YAML(typ="safe").load((JOURNEYS / "policies.yaml").read_text()))) == []
    wrong: dict[str, Any]
    for wrong in (
        {"frequency_caps": [{"channel": "sms", "at_most": 0, "per": "7d"}]},
        {"frequency_caps": [{"channel": "fax", "at_most": 1, "per": "7d"}]},
        {"global_holdout": "10"},
        {"frequency_cap": []},
    ):
        assert list(validator.iter_errors(wrong)), wrong


# --- published with the journeys -------------------------------------------------------------


def test_publishing_after_editing_only_the_policies_publishes_every_journey_anew(
    database: str, tmp_path: Path
) -> None:
    registry = JourneyRegistry(get_engine(database))
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, folder)
    changed, problems = publish_files(registry, [folder], "ada@laptop")
    assert problems == [] and sorted(changed) == [
        "abandoned_cart", "back_in_stock", "birthday", "browse_abandonment", "price_drop", "win_back"]
    first = registry.published()

    policies = folder / "policies.yaml"
    text = policies.read_text()
    policies.write_text(text.replace("at_most: 2", "at_most: 3"))
    # Naming the policies file publishes its folder: every journey, with the new rules.
    changed, problems = publish_files(registry, [policies], "grace@laptop")
    assert problems == [] and sorted(changed) == [
        "abandoned_cart", "back_in_stock", "birthday", "browse_abandonment", "price_drop", "win_back"]
    now = registry.published()
    for name in changed:
        assert now[name].version != first[name].version
        assert now[name].bundle.policies.frequency_caps[0].at_most == 3
        # A run that began on the first version keeps the rules it started with.
        old = registry.version(first[name].version)
        assert old is not None and old.policies.frequency_caps[0].at_most == 2
    assert publish_files(registry, [folder], "grace@laptop") == ([], [])

    policies.write_text(text.replace("at_most: 2", "at_most: 0"))
    changed, problems = publish_files(registry, [folder], "grace@laptop")
    assert changed == [] and [p.message for p in problems] == ["'at_most' must be at least 1, not 0"]
    assert {name: item.version for name, item in registry.published().items()} == {
        name: item.version for name, item in now.items()
    }


def test_the_catalog_that_omnicart_dev_publishes_from_picks_up_policy_edits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, folder)
    seconds = [1000.0]
    catalog = JourneyCatalog(folder, clock=lambda: seconds[0])
    before = catalog.all()
    policies = folder / "policies.yaml"
    text = policies.read_text()

    policies.write_text(text.replace("per: 16h", "per: 12h"))
    seconds[0] += 1.0  # the catalog looks at the folder at most once a second
    edited = catalog.all()
    for name, bundle in edited.items():
        assert bundle.version != before[name].version
        assert bundle.policies.frequency_caps[1].per == "12h"

    # A typo saved mid-edit: every journey keeps its last valid version, and the problem is logged.
    policies.write_text(text.replace("per: 16h", "per: 12 hours"))
    line = policies.read_text().splitlines().index("    per: 12 hours") + 1
    seconds[0] += 1.0
    with caplog.at_level(logging.WARNING, logger="omnicart.journey.catalog"):
        assert catalog.all() == edited
    assert [str(p) for p in catalog.problems] == [
        f"{policies}:{line}:10: bad duration '12 hours': write it like 30m, 1h, 1h30m, 2d or 1w"
    ]
    assert f"{policies}:{line}:10:" in "\n".join(record.getMessage() for record in caplog.records)
