"""Journeys in the customer's language: which variant a customer gets, money, numbers and dates as
each language writes them (compared code point by code point), right-to-left email, the SMS in each
language, ``omnicart validate`` on translations, and the preview showing the localized message.

The same messages through the real SendGrid and Twilio SDKs on the dev server:
``tests/test_channels_end_to_end.py -k in_their_language``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from omnicart.channels.sms_segments import count_segments, with_opt_out
from omnicart.journey.formatting import format_local_date, format_money, format_number
from omnicart.journey.loader import load_journey
from omnicart.journey.model import EmailTemplate, SmsTemplate
from omnicart.journey.report import validate_paths
from omnicart.journey.templates import sample_context
from omnicart.locales import choose_locale, fallback_chain, localized, mark_language
from omnicart.rendering import render_message
from tests.test_simulate_cli import ROOT, run

JOURNEYS = ROOT / "journeys"
FLAGSHIP = load_journey(JOURNEYS / "abandoned_cart.yaml")

# --- which variant ------------------------------------------------------------------------------


def test_the_fallback_chain_goes_from_region_to_language_to_the_journey_default() -> None:
    assert fallback_chain("fa-IR", "en") == ["fa-IR", "fa", "en"]
    assert fallback_chain("FA_ir", "en") == ["fa-IR", "fa", "en"]  # POSIX spelling, any case
    assert fallback_chain("zh-hant-tw", "en") == ["zh-Hant-TW", "zh-Hant", "zh", "en"]
    assert fallback_chain("en-GB", "en") == ["en-GB", "en"]
    assert fallback_chain(None, "tr") == ["tr"]
    assert fallback_chain("not a locale!", "en") == ["en"]


def test_a_customer_gets_the_most_specific_variant_there_is_else_the_default() -> None:
    shipped = {"tr", "ru", "fa"}
    assert choose_locale(shipped, "fa-IR", "en") == "fa"
    assert choose_locale(shipped, "tr-TR", "en") == "tr"
    assert choose_locale(shipped, "ru", "en") == "ru"
    assert choose_locale(shipped, "de-DE", "en") == "en"
    assert choose_locale(shipped, None, "en") == "en"
    assert choose_locale({"fa", "fa-AF"}, "fa-AF", "en") == "fa-AF"
    assert choose_locale({"en"}, "en-GB", "tr") == "en"  # a Turkish-first journey with English variants


def test_the_flagship_template_in_persian_is_its_fa_file_and_an_unknown_locale_gets_the_english_one() -> None:
    template = FLAGSHIP.templates["cart_reminder_1"]
    assert sorted(template.locales) == ["fa", "ru", "tr"]
    persian, locale = localized(template, "fa-IR", FLAGSHIP.journey.default_locale)
    assert isinstance(persian, EmailTemplate) and isinstance(template, EmailTemplate)
    assert locale == "fa" and persian.subject.startswith('{{ customer.first_name | default: "سلام" }}')
    assert persian.categories == template.categories  # settings come from the template, words from the variant
    english, locale = localized(template, "pt-BR", FLAGSHIP.journey.default_locale)
    assert locale == "en" and english is template


# --- Babel formatting, exact code points -----------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "amount", "currency", "expected"),
    [
        ("tr", 1234.5, "TRY", "\u20ba1.234,50"),
        ("ru", 1234.5, "RUB", "1\xa0234,50\xa0\u20bd"),  # no-break spaces between groups and before ₽
        ("fa", 1250000, "IRR",  # ریال ۱٬۲۵۰٬۰۰۰, after a left-to-right mark
         "\u200e\u0631\u06cc\u0627\u0644\xa0\u06f1\u066c\u06f2\u06f5\u06f0\u066c\u06f0\u06f0\u06f0"),
        ("fa-IR", "1,234.505", "USD", "\u200e$\xa0\u06f1\u066c\u06f2\u06f3\u06f4\u066b\u06f5\u06f1"),  # $ ۱٬۲۳۴٫۵۱
        ("en", "1,234.505", "USD", "$1,234.51"),  # halves round up, as shops expect
        ("en", 1234.5, "JPY", "\xa51,235"),  # the currency's own decimals: none for yen
        ("en", 12.5, "SEK", "SEK\xa012.50"),  # CLDR currency spacing, as ICU writes it
        ("tr", 12.5, None, "12,50"),
        ("tr", None, "TRY", ""),
    ],
)
def test_money_is_written_as_the_language_writes_it(locale: str, amount: object, currency: str | None,
                                                    expected: str) -> None:
    assert format_money(amount, currency, locale) == expected


def test_numbers_and_dates_are_written_as_the_language_writes_them() -> None:
    assert format_number(1234567.5, None, "tr") == "1.234.567,5"
    assert format_number(1234567.5, None, "ru") == "1\xa0234\xa0567,5"
    assert format_number(1234567.5, None, "fa") == (
        "\u06f1\u066c\u06f2\u06f3\u06f4\u066c\u06f5\u06f6\u06f7\u066b\u06f5")  # ۱٬۲۳۴٬۵۶۷٫۵
    assert format_number(3, 2, "tr") == "3,00"
    assert format_local_date("2026-11-24", "long", "ru") == "24 \u043d\u043e\u044f\u0431\u0440\u044f 2026\u202f\u0433."
    assert format_local_date("2026-11-24", "long", "fa") == (
        "\u06f2\u06f4 \u0646\u0648\u0627\u0645\u0628\u0631 \u06f2\u06f0\u06f2\u06f6")  # ۲۴ نوامبر ۲۰۲۶
    # A timestamp's day is the customer's: 23:30 UTC is already the 25th in Istanbul.
    assert format_local_date("2026-11-24T23:30:00+00:00", "long", "tr", "Europe/Istanbul") == "25 Kas\u0131m 2026"
    assert format_local_date("2026-11-24T23:30:00+00:00", "d MMMM", "en", "UTC") == "24 November"


def test_the_filters_format_for_the_variant_the_customer_gets() -> None:
    template = SmsTemplate(
        channel="sms", marketing=False,
        body="Total {{ cart.total | money: cart.currency }} ({{ cart.items | size | number }} items)",
        locales={"ru": SmsTemplate(
            channel="sms", marketing=False,
            body="Итого {{ cart.total | money: cart.currency }}, товаров: {{ cart.items | size }}")},
    )
    context = sample_context(template)
    context["cart"].update(total=1234.5, currency="RUB")
    context["customer"]["locale"] = "ru-RU"
    assert render_message(template, context).body == "Итого 1\xa0234,50\xa0\u20bd, товаров: 2"
    context["customer"]["locale"] = "fa-IR"  # no Persian variant: the journey's English, formatted as English
    assert render_message(template, context).body == "Total RUB\xa01,234.50 (2 items)"
    context["customer"]["locale"] = "fa-IR"
    assert render_message(template, context, default_locale="fa").body == (
        "Total \u200eRUB\xa0\u06f1\u066c\u06f2\u06f3\u06f4\u066b\u06f5\u06f0 (\u06f2 items)")


# --- right to left -------------------------------------------------------------------------------


def test_the_email_root_says_its_language_and_rtl_for_persian() -> None:
    assert mark_language('<!doctype html>\n<html lang="en" class="x">', "fa") == (
        '<!doctype html>\n<html lang="fa" dir="rtl" class="x">')
    assert mark_language('<html dir="ltr" lang="en"><body>', "tr") == '<html lang="tr"><body>'
    assert mark_language("<p>سلام</p>", "fa-IR") == '<div lang="fa-IR" dir="rtl"><p>سلام</p></div>'
    assert mark_language("<p>Merhaba</p>", "tr") == "<p>Merhaba</p>"


def test_the_flagship_email_in_persian_is_rtl_and_its_text_part_is_plain_text() -> None:
    template = FLAGSHIP.templates["cart_reminder_1"]
    context = sample_context(template)
    context["customer"]["locale"] = "fa-IR"
    parts = render_message(template, context)
    assert parts.html is not None and parts.text is not None
    assert re.search(r"<html[^>]*>", parts.html).group(0) == '<html lang="fa" dir="rtl">'  # type: ignore[union-attr]
    assert parts.text.startswith("JUNIPER & CO.\n\nMaya\u060c \u0647\u0646\u0648\u0632")  # "Maya، هنوز ..."
    assert "<" not in parts.text and "\u200e$\xa0\u06f1\u06f8\u06f8\u066b\u06f5\u06f0" in parts.text  # $ ۱۸۸٫۵۰


# --- SMS: segments and the opt-out line in each language ------------------------------------------


def test_the_segment_counter_bills_turkish_russian_and_persian_letters_as_ucs2() -> None:
    assert count_segments("Iptal icin STOP yazin").encoding == "GSM-7"
    assert count_segments("\u0130ptal i\u00e7in STOP yaz\u0131n").encoding == "UCS-2"  # İ, ı are not GSM-7
    assert count_segments("\u015f" * 70).segments == 1 and count_segments("\u015f" * 71).segments == 2  # ş
    assert count_segments("\u0436" * 134).segments == 2 and count_segments("\u0436" * 135).segments == 3  # ж
    assert count_segments("\u067e" * 70).segments == 1 and count_segments("\u067e" * 71).segments == 2  # پ


@pytest.mark.parametrize(
    ("locale", "footer", "encoding", "segments"),
    [
        ("tr-TR", "Iptal icin STOP yazin", "UCS-2", 2),
        ("ru", "Отписаться: ответьте STOP", "UCS-2", 2),
        ("fa-IR", "برای لغو، STOP را بفرستید", "UCS-2", 2),
        ("de", "Reply STOP to opt out", "GSM-7", 1),
    ],
)
def test_the_flagship_sms_ends_with_the_opt_out_line_in_its_language(
    locale: str, footer: str, encoding: str, segments: int
) -> None:
    template = FLAGSHIP.templates["cart_reminder_sms"]
    context = sample_context(template)
    context["customer"]["locale"] = locale
    context["cart"]["restore_url"] = "https://shop.example/c/8842"
    body = render_message(template, context).body or ""
    assert body.endswith("\n" + footer)
    assert (count_segments(body).encoding, count_segments(body).segments) == (encoding, segments)
    assert with_opt_out(body, True) == body  # the Twilio channel, which knows no locale, adds no second line


# --- omnicart validate ----------------------------------------------------------------------------


@pytest.fixture
def journeys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped flagship and its templates, as the current directory (so FILE is relative)."""
    shutil.copytree(JOURNEYS / "templates", tmp_path / "templates")
    shutil.copy(JOURNEYS / "abandoned_cart.yaml", tmp_path / "abandoned_cart.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def validate(capsys: pytest.CaptureFixture[str], *paths: str) -> list[str]:
    code = validate_paths([Path(path) for path in paths])
    lines = capsys.readouterr().out.splitlines()
    assert code == (1 if lines else 0)
    return lines


def test_validate_reports_a_translation_that_reads_other_variables_where_it_does(
    journeys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(capsys, ".") == []
    templates = journeys / "templates"
    turkish, russian = templates / "cart_reminder_sms.tr.yaml", templates / "cart_reminder_sms.ru.yaml"
    turkish.write_text(turkish.read_text().replace('{{ customer.first_name | default: "Merhaba" }}', "Merhaba"))
    russian.write_text(russian.read_text().replace("Juniper & Co:", "Juniper & Co ({{ trigger.id }}):"))
    same = "a translation must read the same variables"
    differences = [
        # A folded (>-) body is located at its start, as for every template error in one.
        f"templates/cart_reminder_sms.ru.yaml:2:7: body: the ru variant uses 'trigger.id', which "
        f"cart_reminder_sms.yaml does not: {same}",
        f"templates/cart_reminder_sms.tr.yaml:1:1: the tr variant leaves out 'customer.first_name', which "
        f"cart_reminder_sms.yaml uses: {same}",
    ]
    assert validate(capsys, "templates") == differences
    assert validate(capsys, "templates/cart_reminder_sms.tr.yaml") == differences
    flagship = (journeys / "abandoned_cart.yaml").read_text().splitlines()
    where = next(n for n, text in enumerate(flagship, 1) if "template: cart_reminder_sms" in text)
    assert validate(capsys, "abandoned_cart.yaml") == [
        f"abandoned_cart.yaml:{where}:17: template 'cart_reminder_sms' differs in a translation: {line}"
        for line in differences
    ]


def test_validate_reports_a_translation_that_changes_settings_or_is_not_a_locale(
    journeys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    turkish = (journeys / "templates" / "cart_reminder_1.tr.yaml").read_text()
    (journeys / "templates" / "cart_reminder_1.de.yaml").write_text("categories: [de]\n" + turkish)
    (journeys / "templates" / "cart_reminder_2.old.yaml").write_text("subject: x\n")
    (journeys / "templates" / "cart_reminder_sms.yaml").write_text(
        (JOURNEYS / "templates" / "cart_reminder_sms.yaml").read_text() + "locales: {}\n")
    assert validate(capsys, "templates") == [
        "templates/cart_reminder_1.de.yaml:1:1: a locale variant holds only the message's words "
        "(subject, preheader, html, text); 'categories' comes from cart_reminder_1.yaml",
        "templates/cart_reminder_2.old.yaml:1:1: 'old' in the file name is not a locale: name a variant "
        "like cart_reminder_2.tr.yaml or cart_reminder_2.fa-IR.yaml",
        "templates/cart_reminder_sms.yaml:7:1: write each language in a file of its own, such as "
        "cart_reminder_sms.tr.yaml, next to this one",
    ]


# --- the preview ---------------------------------------------------------------------------------


def test_simulate_shows_each_customer_the_message_in_their_language(tmp_path: Path) -> None:
    events = []
    for line in (ROOT / "examples" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["customer_id"] == "cus_ada":
            event["properties"] = {**event["properties"], "locale": "tr-TR", "currency": "TRY"} if (
                event["type"] in ("customer_updated", "checkout_started")) else event["properties"]
        if event["customer_id"] == "cus_linus" and event["type"] == "customer_updated":
            event["properties"] = {**event["properties"], "locale": "fa-IR"}
        events.append(json.dumps(event))
    (tmp_path / "events.jsonl").write_text("\n".join(events) + "\n")
    result = run("simulate", "journeys/abandoned_cart.yaml", "--events", str(tmp_path / "events.jsonl"),
                 "--show-content")
    assert result.returncode == 0, result.stderr
    sends = [json.loads(line) for line in result.stdout.splitlines() if '"content"' in line]
    ada = {send["template"]: send["content"] for send in sends if send["customer_id"] == "cus_ada"}
    assert ada["cart_reminder_1"]["subject"] == "Ada, sepetin seni bekliyor"
    assert "Toplam \u20ba49,50" in ada["cart_reminder_1"]["text"]
    assert ada["cart_reminder_sms"]["body"].endswith("\nIptal icin STOP yazin")
    linus = next(send["content"] for send in sends if send["customer_id"] == "cus_linus")
    assert linus["subject"] == "Linus\u060c سبد خرید شما ذخیره شده است"  # U+060C: the Arabic comma
    assert "\u062c\u0645\u0639 \u06a9\u0644" in linus["text"]  # "جمع کل", the total, in Persian
    grace = next(send["content"] for send in sends if send["customer_id"] == "cus_grace")
    assert grace["subject"] == "Grace, your cart is saved for you"  # no locale: the journey's default
