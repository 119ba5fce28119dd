"""UTM parameters on the links of a message, as the customer receives them.

A journey written as marketers write it (YAML, loaded and published the way ``omnicart publish``
does) is sent by the real send activity (in the Temporal SDK's activity harness) through the real
SendGrid and Twilio SDKs and the FCM client against the loopback providers, and the links are read
back from what arrived there. ``omnicart simulate --show-content`` must show the same links, and
``omnicart schema`` must describe the setting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.send import SendActivities
from omnicart.channels.base import ChannelSender
from omnicart.channels.fcm import FcmPushSender
from omnicart.channels.sendgrid_email import SendGridEmailSender
from omnicart.channels.sms_segments import count_segments
from omnicart.channels.twilio_sms import TwilioSmsSender
from omnicart.events import Channel
from omnicart.journey.loader import JourneyError, load_journey
from omnicart.journey.model import JourneyBundle, Utm
from omnicart.journey.registry import JourneyRegistry
from omnicart.ledger import MessageLedger
from omnicart.messages import SendRequest, SendResult
from omnicart.rendering import render_message, request_context
from omnicart.settings import Settings
from omnicart.storage import get_engine, upgrade
from omnicart.utm import utm_tagger
from tests.providers.fcm_server import FcmServer
from tests.providers.sendgrid_server import SendGridServer
from tests.providers.twilio_server import TwilioServer
from tests.test_fcm_push import CLIENT_EMAIL, PROJECT, service_account_file

ROOT = Path(__file__).resolve().parent.parent
API = "https://api.shop.example.com"  # OMNICART_PUBLIC_URL: where the unsubscribe link points
SENDGRID_KEY = "SG.utm-test.key"
TWILIO_SID = "AC" + "75" * 16
TWILIO_TOKEN = "twilio-utm-auth-token"
RESTORE = "https://shop.example.com/cart/restore?token=r3st0re&lang=en#checkout"

JOURNEY = """\
name: cart_rescue
trigger: {{event: checkout_started, key: cart_id}}
{utm}
steps:
  - id: first_reminder
    send: {{channel: email, template: utm_email}}
  - id: text_nudge
    send: {{channel: sms, template: utm_sms}}
  - id: app_nudge
    send: {{channel: push, template: utm_push}}
"""

TEMPLATES = {
    "utm_email": """\
channel: email
subject: Your cart is saved
html: |
  <p>Hi {{ customer.first_name | default: "there" }},</p>
  <p><a href="{{ cart.restore_url | default: "https://shop.example.com/cart" }}"
        style="color:#2f5d50">Return to my cart</a></p>
  <p><a href="https://shop.example.com/sale?utm_campaign=spring_sale">Spring sale</a>
  <a href="https://www.shop.example.com/help">Help</a> <a href='https://myshop.example.com/'>Not ours</a>
  <a href="https://tracking.carrier.example/parcel/1">Track a parcel</a></p>
  <p><a href="mailto:help@shop.example.com">Write to us</a> or call <a href="tel:+15005550006">us</a>.</p>
  <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
""",
    "utm_sms": """\
channel: sms
body: 'Juniper: your cart is saved. {{ cart.restore_url | default: "https://shop.example.com/cart" }}'
""",
    "utm_push": """\
channel: push
title: Your cart is waiting
body: Tap to pick up where you left off.
url: '{{ cart.restore_url | default: "https://shop.example.com/cart" }}'
""",
}


def journey_folder(tmp_path: Path, utm: str = "") -> Path:
    """A journeys folder with the test journey (``utm`` is its YAML line, if any) and its templates."""
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    for name, text in TEMPLATES.items():
        (folder / "templates" / f"{name}.yaml").write_text(text)
    (folder / "cart_rescue.yaml").write_text(JOURNEY.format(utm=utm))
    return folder / "cart_rescue.yaml"


class Links(HTMLParser):
    """Every ``<a href>`` of an email, as a mail client reads them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href is not None:
            self.hrefs.append(href)


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def utm(url: str) -> dict[str, str]:
    return {key: value for key, value in query(url) if key.startswith("utm_")}


# --- the providers ---------------------------------------------------------------------------


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer(SENDGRID_KEY) as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with TwilioServer(TWILIO_SID, TWILIO_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def fcm_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm(fcm_key: rsa.RSAPrivateKey) -> Iterator[FcmServer]:
    public = fcm_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with FcmServer(PROJECT, public, CLIENT_EMAIL) as server:
        yield server


class Shop:
    """The send activity on a fresh database with the journey published, every channel on a provider."""

    def __init__(
        self,
        tmp_path: Path,
        journey: Path,
        sendgrid: SendGridServer,
        twilio: TwilioServer,
        fcm: FcmServer,
        fcm_key: rsa.RSAPrivateKey,
    ) -> None:
        self.settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            public_url=API,
            sendgrid_api_key=SecretStr(SENDGRID_KEY),
            sendgrid_host=sendgrid.url,
            twilio_account_sid=TWILIO_SID,
            twilio_auth_token=SecretStr(TWILIO_TOKEN),
            twilio_from_number="+15005550006",
            twilio_base_url=twilio.url,
            fcm_project_id=PROJECT,
            fcm_service_account_file=service_account_file(tmp_path, fcm_key, fcm.token_uri),
            fcm_base_url=fcm.url,
        )
        upgrade(self.settings.database())
        engine = get_engine(self.settings.database())
        self.bundle: JourneyBundle = load_journey(journey)
        JourneyRegistry(engine).publish([self.bundle], "tests")
        senders: dict[Channel, ChannelSender] = {
            "email": SendGridEmailSender(self.settings),
            "sms": TwilioSmsSender(self.settings),
            "push": FcmPushSender(self.settings),
        }
        self.activities = SendActivities(MessageLedger(engine), senders, self.settings)

    def request(self, step_id: str, variant: str | None = None) -> SendRequest:
        """What the workflow asks for at ``step_id``: the template by name, not the template itself."""
        step = self.bundle.journey.steps[self.bundle.journey.step_index(step_id)]
        assert step.send is not None
        channel: Channel = self.bundle.templates[step.send.template].channel
        to = {"email": ["maya@example.com"], "sms": ["+14155550142"], "push": ["device-1"]}[channel]
        return SendRequest(
            message_id=f"msg_cus42_run1_{step_id}_1",
            customer_id="cus_42",
            journey=self.bundle.journey.name,
            journey_version=self.bundle.version,
            run_id="run_1",
            step_id=step_id,
            channel=channel,
            template_name=step.send.template,
            to=to,
            context={"customer": {"id": "cus_42", "first_name": "Maya"}, "cart": {"restore_url": RESTORE}},
            variant=variant,
        )

    async def send(self, step_id: str, variant: str | None = None) -> SendResult:
        request = self.request(step_id, variant)
        result: SendResult = await ActivityEnvironment().run(self.activities.send_message, request)
        assert result.outcome == "sent", result.error
        return result


@pytest.fixture
def shop_for(
    tmp_path: Path, sendgrid: SendGridServer, twilio: TwilioServer, fcm: FcmServer, fcm_key: rsa.RSAPrivateKey
) -> Any:
    def make(utm_line: str = "") -> Shop:
        return Shop(tmp_path, journey_folder(tmp_path, utm_line), sendgrid, twilio, fcm, fcm_key)

    return make


def sent_email(sendgrid: SendGridServer) -> tuple[list[str], str]:
    """The hrefs of the HTML part and the text part of the one email SendGrid accepted."""
    [(_, body)] = sendgrid.accepted
    parts = {part["type"]: part["value"] for part in body["content"]}
    return Links(parts["text/html"]).hrefs, parts["text/plain"]


# --- through the providers -------------------------------------------------------------------


async def test_an_emails_links_arrive_tagged_and_its_own_links_do_not(shop_for: Any, sendgrid: SendGridServer) -> None:
    await shop_for().send("first_reminder")

    hrefs, text = sent_email(sendgrid)
    restore, sale, help_page, lookalike, carrier, mailto, tel, unsubscribe = hrefs
    # The cart link keeps its parameters, in order, and its fragment; ours come after them.
    assert urlsplit(restore)._replace(query="").geturl() == "https://shop.example.com/cart/restore#checkout"
    assert query(restore) == [
        ("token", "r3st0re"), ("lang", "en"),
        ("utm_source", "omnicart"), ("utm_medium", "email"),
        ("utm_campaign", "cart_rescue"), ("utm_content", "first_reminder"),
    ]
    # The template's own campaign wins; the parameters it lacks are added.
    assert query(sale) == [
        ("utm_campaign", "spring_sale"),
        ("utm_source", "omnicart"), ("utm_medium", "email"), ("utm_content", "first_reminder"),
    ]
    for link in (help_page, lookalike, carrier):  # no domains set: every http(s) link
        assert utm(link)["utm_campaign"] == "cart_rescue"
    assert (mailto, tel) == ("mailto:help@shop.example.com", "tel:+15005550006")
    assert unsubscribe.startswith(f"{API}/v1/unsubscribe/") and "utm_" not in unsubscribe
    # The text part carries the same links.
    assert f"Return to my cart ({restore})" in text
    assert f"Unsubscribe ({unsubscribe})" in text


async def test_an_sms_link_is_tagged_and_billed_for_its_final_length(
    shop_for: Any, twilio: TwilioServer
) -> None:
    shop = shop_for()
    result = await shop.send("text_nudge")

    [created] = twilio.sent()
    body = created.field("Body") or ""
    [link] = [word for word in body.split() if word.startswith("https://")]
    assert utm(link) == {
        "utm_source": "omnicart", "utm_medium": "sms", "utm_campaign": "cart_rescue", "utm_content": "text_nudge",
    }
    assert body.endswith("\nReply STOP to opt out")
    # Untagged, this text fits one segment; the tags make it two, and two is what is billed.
    request = shop.request("text_nudge")
    template = shop.bundle.templates["utm_sms"]
    untagged = render_message(template, request_context(request, template)).body or ""
    assert count_segments(untagged).segments == 1
    assert result.segments == count_segments(body).segments == 2


async def test_a_push_url_is_tagged_with_the_runs_split_variant(shop_for: Any, fcm: FcmServer) -> None:
    await shop_for().send("app_nudge", variant="twenty_off")

    [sent] = fcm.sends()
    message = sent.json["message"]
    url = message["data"]["url"]
    assert utm(url) == {
        "utm_source": "omnicart", "utm_medium": "push",
        "utm_campaign": "cart_rescue", "utm_content": "app_nudge-twenty_off",
    }
    assert message["webpush"]["fcm_options"]["link"] == url
    assert urlsplit(url).fragment == "checkout"


async def test_utm_disabled_leaves_every_link_as_the_template_wrote_it(
    shop_for: Any, sendgrid: SendGridServer, twilio: TwilioServer
) -> None:
    shop = shop_for("utm: {enabled: false}")
    await shop.send("first_reminder")
    await shop.send("text_nudge")

    hrefs, _ = sent_email(sendgrid)
    assert hrefs[0] == RESTORE
    assert [utm(href) for href in hrefs if utm(href)] == [{"utm_campaign": "spring_sale"}]
    [created] = twilio.sent()
    assert RESTORE in (created.field("Body") or "")


async def test_domains_limit_tagging_to_the_shops_hosts(shop_for: Any, sendgrid: SendGridServer) -> None:
    shop = shop_for("utm: {source: newsletter, campaign: winter_cart, domains: [shop.example.com]}")
    await shop.send("first_reminder")

    restore, sale, help_page, lookalike, carrier, *_ = sent_email(sendgrid)[0]
    assert utm(restore) == {
        "utm_source": "newsletter", "utm_medium": "email",
        "utm_campaign": "winter_cart", "utm_content": "first_reminder",
    }
    assert utm(sale)["utm_campaign"] == "spring_sale"
    assert utm(help_page)["utm_source"] == "newsletter"  # a subdomain of a listed host
    assert lookalike == "https://myshop.example.com/"  # a different host that merely ends the same
    assert carrier == "https://tracking.carrier.example/parcel/1"


# --- the preview and the schema --------------------------------------------------------------


def test_simulate_shows_the_links_the_customer_gets(tmp_path: Path) -> None:
    journey = journey_folder(tmp_path)
    events = tmp_path / "events.jsonl"
    customer = {"email": "maya@example.com", "phone": "+14155550142", "push_tokens": ["device-1"],
                "consent": {"email": True, "sms": True, "push": True}}
    checkout = {"cart_id": "cart_1", "items": [{"sku": "S1", "quantity": 1}], "restore_url": RESTORE}
    events.write_text("\n".join(json.dumps(event) for event in [
        {"id": "e1", "type": "customer_updated", "customer_id": "cus_42", "source": "api",
         "timestamp": "2026-11-20T09:00:00Z", "properties": customer},
        {"id": "e2", "type": "checkout_started", "customer_id": "cus_42", "source": "web",
         "timestamp": "2026-11-20T10:00:00Z", "properties": checkout},
    ]) + "\n")

    result = subprocess.run(
        [sys.executable, "-m", "omnicart.cli", "simulate", str(journey), "--events", str(events), "--show-content"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    sends = {line["channel"]: line["content"] for line in map(json.loads, result.stdout.splitlines())
             if line["action"] == "send"}
    tagged = {channel: f"{RESTORE.split('#')[0]}&utm_source=omnicart&utm_medium={channel}"
                       f"&utm_campaign=cart_rescue&utm_content={step}#checkout"
              for channel, step in (("email", "first_reminder"), ("sms", "text_nudge"), ("push", "app_nudge"))}
    assert f"Return to my cart ({tagged['email']})" in sends["email"]["text"]
    assert tagged["sms"] in sends["sms"]["body"]
    assert sends["push"]["url"] == tagged["push"]


def test_omnicart_schema_describes_utm_and_refuses_a_url_as_a_domain() -> None:
    result = subprocess.run([sys.executable, "-m", "omnicart.cli", "schema"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert set(schema["$defs"]["Utm"]["properties"]) == {"enabled", "source", "campaign", "domains"}
    validator = Draft202012Validator(schema)
    journey: dict[str, Any] = {"name": "j", "trigger": {"event": "checkout_started"}, "steps": [{"exit": "done"}]}
    assert not list(validator.iter_errors({**journey, "utm": {"domains": ["shop.example.com"], "source": "crm"}}))
    assert list(validator.iter_errors({**journey, "utm": {"domains": ["https://shop.example.com"]}}))
    assert list(validator.iter_errors({**journey, "utm": {"medium": "email"}}))


def test_a_journey_naming_a_url_as_a_domain_is_refused_where_it_says_so(tmp_path: Path) -> None:
    journey = journey_folder(tmp_path, "utm: {domains: ['https://shop.example.com']}")
    with pytest.raises(JourneyError) as refused:
        load_journey(journey)
    [problem] = refused.value.problems
    assert str(problem).startswith(f"{journey}:3:")
    assert "bad domain 'https://shop.example.com': write the host alone" in str(problem)


# --- the rules, one at a time ----------------------------------------------------------------


def tagger(**utm: Any) -> Any:
    return utm_tagger(Utm(**utm), journey="cart_rescue", channel="sms", step_id="nudge", ours=[f"{API}/v1/"])


def test_urls_in_text_end_where_a_reader_sees_them_end() -> None:
    text = "Back (https://shop.example.com/a), or https://shop.example.com/b. Help: https://shop.example.com"
    tags = "utm_source=omnicart&utm_medium=sms&utm_campaign=cart_rescue&utm_content=nudge"
    assert tagger().text(text) == (
        f"Back (https://shop.example.com/a?{tags}), or https://shop.example.com/b?{tags}. "
        f"Help: https://shop.example.com/?{tags}"
    )


def test_links_that_are_not_web_pages_or_are_ours_stay_untouched() -> None:
    for link in ("mailto:a@shop.example.com", "tel:+15005550006", "sms:+15005550006", "/cart", "www.shop.example.com",
                 f"{API}/v1/unsubscribe/abc.def", "ftp://shop.example.com/f", "https://[::1"):
        assert tagger().url(link) == link
        assert tagger().text(f"see {link} now") == f"see {link} now"


def test_only_the_start_tags_of_tagged_links_change_in_html() -> None:
    html = (
        '<!doctype html><html><head><style>a{color:red}</style></head><body>\n'
        '<!--[if mso]><v:roundrect href="https://shop.example.com/x"></v:roundrect><![endif]-->\n'
        '<p class=note>Tom &amp; Jerry &mdash; <img src="https://shop.example.com/i.png" alt=x></p>\n'
        "<A HREF='https://shop.example.com/c?a=1&amp;b=2' target=_blank data-x>Cart</A><br/>\n"
        '<a href="#top">Top</a></body></html>'
    )
    tagged = tagger().html(html)
    tags = "utm_source=omnicart&amp;utm_medium=sms&amp;utm_campaign=cart_rescue&amp;utm_content=nudge"
    new_tag = f'<a href="https://shop.example.com/c?a=1&amp;b=2&amp;{tags}" target="_blank" data-x>'
    assert tagged == html.replace("<A HREF='https://shop.example.com/c?a=1&amp;b=2' target=_blank data-x>", new_tag)
    assert tagger(enabled=True, domains=["example.org"]).html(html) == html
    assert utm_tagger(Utm(enabled=False), journey="j", channel="email", step_id="s") is None
