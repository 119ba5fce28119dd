"""Message templates: Liquid rendering, the formatting filters and the sample context previews use.

Rendering is strict on purpose: a marketer's typo in ``{{ customer.frist_name }}`` must fail in
``omnicart validate``, not reach a customer as "Hi ,". Values that some customers or events lack are
written with Liquid's ``default`` filter (``{{ customer.first_name | default: "there" }}``) or tested
with ``{% if item.image_url %}``: a missing value is false in a test and takes a default, but printing
it is an error. Top-level names are checked statically too, so ``{% if custmer.vip %}`` is caught
even though a test would quietly be false. HTML is autoescaped so that a product called
``<b>Sale</b>`` cannot break an email's markup; subjects, SMS and push text are not escaped.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any

from liquid import BoundTemplate, Environment, FalsyStrictUndefined
from liquid.exceptions import LiquidError
from pydantic import BaseModel, ConfigDict

from omnicart.events import KNOWN_EVENT_TYPES
from omnicart.journey.formatting import FILTERS, money
from omnicart.journey.model import DEFAULT_LOCALE, EmailTemplate, Template

# The top-level names a template may use (docs/ARCHITECTURE.md, "Templates").
CONTEXT_NAMES = ("customer", "cart", "trigger", "journey", "message", "discount", "unsubscribe_url", "catalog")

# Which template fields are Liquid, in the order a reader meets them; ``html`` is the only escaped one.
_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "preheader", "html", "text"),
    "sms": ("body",),
    "push": ("title", "body", "url", "image_url"),
    "whatsapp": ("body",),
}
_HTML_FIELDS = frozenset({"html"})


class RenderedParts(BaseModel):
    """A template's rendered text, ready for a channel; a part the channel does not have is None."""

    model_config = ConfigDict(frozen=True)

    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    title: str | None = None
    url: str | None = None
    image_url: str | None = None
    content_variables: dict[str, str] | None = None


class TemplateError(ValueError):
    """A template field that does not parse or render, with where in that field it failed.

    ``line`` and ``column`` are 1-based and count within the field's own text, so the loader can
    translate them into a position in the template's YAML file.
    """

    def __init__(self, field: str, line: int, column: int, reason: str) -> None:
        super().__init__(f"{field}, line {line}: {reason}")
        self.field = field
        self.line = line
        self.column = column
        self.reason = reason


def _environment(*, autoescape: bool) -> Environment:
    env = Environment(undefined=FalsyStrictUndefined, autoescape=autoescape, strict_filters=True)
    env.filters.update(FILTERS)
    return env


_HTML_ENV = _environment(autoescape=True)
_TEXT_ENV = _environment(autoescape=False)


def text_fields(channel: str) -> tuple[str, ...]:
    """The Liquid parts of a template of ``channel``: its words, which locale variants translate."""
    return _FIELDS[channel]


def variable_uses(template: Template) -> dict[str, tuple[str, int, int]]:
    """Every variable path the template reads from its context (``customer.first_name``), with the
    field, line and column of its first use: what a translation must keep the same. ``items.size``,
    ``.first`` and ``.last`` read ``items`` (a language may count with ``| size`` or need no count).
    A field that does not parse reads nothing here."""
    uses: dict[str, tuple[str, int, int]] = {}
    for field, source, html in template_sources(template):
        try:
            parsed = _parse(source, html)
        except LiquidError:
            continue  # reported by check_template, at the line that does not parse
        for found in parsed.analyze().globals.values():
            for use in found:
                segments = list(use.segments)
                while len(segments) > 1 and segments[-1] in ("size", "first", "last"):
                    segments.pop()
                path = _path(segments)
                if path not in uses:
                    uses[path] = (field, *_line_column(source, use.span.index))
    return uses


def _path(segments: list[Any]) -> str:
    """A variable as the template writes it: ``catalog[item.sku].pickup`` (a nested lookup is a list)."""
    text = ""
    for segment in segments:
        if isinstance(segment, (list, tuple)):
            text += f"[{_path(list(segment))}]"
        else:
            text += f".{segment}" if text else str(segment)
    return text


def template_sources(template: Template) -> Iterator[tuple[str, str, bool]]:
    """Each part a template has, in its channel's order: (field, Liquid source, whether it is HTML)."""
    for field in _FIELDS[template.channel]:
        source = getattr(template, field)
        if source is not None:
            yield field, source, field in _HTML_FIELDS
    for name, source in getattr(template, "content_variables", {}).items():
        yield f"content_variables.{name}", source, False


@lru_cache(maxsize=1024)
def _parse(source: str, html: bool) -> BoundTemplate:
    """Parse once per distinct source: a journey renders the same few templates for every customer."""
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


# --- rendering -------------------------------------------------------------------------------


def render_template(template: Template, context: dict[str, Any], *, derive_text: bool = True) -> RenderedParts:
    """Render every part of a template; the first part that fails raises ``TemplateError``.

    An email without a text part gets one derived from its HTML, unless ``derive_text`` is off (a
    preview that only needs to know whether the template renders skips that cost).
    """
    parts: dict[str, Any] = {}
    for field in _FIELDS[template.channel]:
        source = getattr(template, field)
        parts[field] = None if source is None else _render_field(field, source, context)
    variables = getattr(template, "content_variables", None)
    if variables is not None:  # WhatsApp: each placeholder of the approved template, rendered alone
        parts["content_variables"] = {
            name: _render_field(f"content_variables.{name}", source, context) for name, source in variables.items()
        }
    if not derive_text:
        return RenderedParts(**parts)
    if isinstance(template, EmailTemplate) and parts.get("text") is None and parts.get("html") is not None:
        parts["text"] = html_to_text(parts["html"] or "")
    return RenderedParts(**parts)


def _render_field(field: str, source: str, context: dict[str, Any]) -> str:
    try:
        return _parse(source, field in _HTML_FIELDS).render(**context)
    except LiquidError as exc:
        raise _template_error(field, source, exc, context) from None


def _template_error(field: str, source: str, exc: LiquidError, context: dict[str, Any]) -> TemplateError:
    where = exc.context()
    line, column = (where[0], where[1] + 1) if where else (1, 1)
    reason = str(exc.message or type(exc).__name__)
    unclosed = re.match(r"expected tag end(\w+)", reason)
    if unclosed and where is None:
        tag = unclosed.group(1)
        index = _unclosed_tag(source, tag)
        line, column = _line_column(source, index)
        reason = f"'{{% {tag} %}}' is never closed: add {{% end{tag} %}}"
    undefined = re.fullmatch(r"'?([\w.\[\]]+?)'? is undefined", reason)
    if undefined:
        reason = _undefined_reason(undefined.group(1), context)
    return TemplateError(field, line, column, reason)


def _unclosed_tag(source: str, tag: str) -> int:
    """Where the block that lacks its ``end`` tag opens (Liquid only says that one is missing)."""
    opened: list[int] = []
    for match in re.finditer(r"{%-?\s*(end)?" + re.escape(tag) + r"\b", source):
        if match.group(1):
            if opened:
                opened.pop()
        else:
            opened.append(match.start())
    return opened[0] if opened else 0


def _undefined_reason(path: str, context: dict[str, Any]) -> str:
    """Say which part of a dotted name is wrong, and what was probably meant."""
    segments = path.split(".")
    current: Any = context
    for index, segment in enumerate(segments):
        while isinstance(current, list) and current:
            current = current[0]
        if not isinstance(current, dict):
            break
        if segment not in current:
            known = [str(key) for key in current]
            close = difflib.get_close_matches(segment, known, n=1, cutoff=0.6)
            prefix = ".".join(segments[:index])
            if close:
                return f"unknown variable '{path}' — did you mean '{'.'.join([*segments[:index], close[0]])}'?"
            if prefix in ("trigger.properties", "customer", "cart") or prefix.startswith("trigger.properties."):
                return (
                    f"'{path}' is not in every message's data: give it a default, like {{{{ {path} | default: \"\" }}}}"
                )
            return f"unknown variable '{path}'"
        current = current[segment]
    return f"unknown variable '{path}'"


# --- checking a template without sending it --------------------------------------------------


def check_template(template: Template, trigger_events: Sequence[str] | None = None) -> list[TemplateError]:
    """Every reason this template would fail for real: syntax, unknown names, and a sample render.

    Each field is checked on its own, so one run reports a problem in every field that has one.
    The sample render uses a realistic context for each trigger event given (the journey's own
    trigger when a journey uses the template); a template on its own does not know which event
    starts its runs, so it is judged by the trigger it renders best with.
    """
    errors: list[TemplateError] = []
    fields: list[tuple[str, str]] = []
    for field, source, html in template_sources(template):
        try:
            parsed = _parse(source, html)
        except LiquidError as exc:
            errors.append(_template_error(field, source, exc, {}))
            continue
        unknown = list(_unknown_names(template, field, source, parsed))
        errors.extend(unknown)
        if not unknown:
            fields.append((field, source))
    if isinstance(template, EmailTemplate) and template.sendgrid_template_id is None:
        sources = " ".join(part or "" for part in (template.html, template.text))
        if not re.search(r"{{-?\s*unsubscribe_url\b", sources):
            errors.append(TemplateError("html", 1, 1, "an email needs an unsubscribe link: add {{ unsubscribe_url }}"))
    best: list[TemplateError] | None = None
    for event_type in trigger_events or KNOWN_EVENT_TYPES:
        context = sample_context(template, event_type)
        failed: list[TemplateError] = []
        for field, source in fields:
            try:
                _render_field(field, source, context)
            except TemplateError as exc:
                failed.append(exc)
        if best is None or len(failed) < len(best):
            best = failed
        if not failed:
            break
    order = [field for field, _, _ in template_sources(template)]
    return sorted([*errors, *(best or [])], key=lambda error: (order.index(error.field), error.line, error.column))


def _unknown_names(template: Template, field: str, source: str, parsed: BoundTemplate) -> Iterator[TemplateError]:
    for name, uses in parsed.analyze().globals.items():
        span = uses[0].span
        line, column = _line_column(source, span.index)
        if name == "discount" and not (isinstance(template, EmailTemplate) and template.discount_percent):
            reason = "'discount' exists only in an email template that sets discount_percent"
        elif name == "unsubscribe_url" and template.channel != "email":
            reason = "'unsubscribe_url' exists only in email templates"
        elif name in CONTEXT_NAMES:
            continue
        else:
            close = difflib.get_close_matches(name, CONTEXT_NAMES, n=1, cutoff=0.6)
            hint = f" — did you mean '{close[0]}'?" if close else f": use one of {', '.join(CONTEXT_NAMES)}"
            reason = f"unknown variable '{name}'{hint}"
        yield TemplateError(field, line, column, reason)


def _line_column(source: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(source)))
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return line, column


# --- the sample context ----------------------------------------------------------------------

_SHOP = "https://shop.example.com"
_SAMPLE_ITEMS: list[dict[str, Any]] = [
    {
        "sku": "LIN-SHIRT-SAND-M",
        "name": "Linen Shirt — Sand, M",
        "quantity": 1,
        "price": 59.0,
        "image_url": f"{_SHOP}/images/linen-shirt-sand.jpg",
        "url": f"{_SHOP}/products/linen-shirt?variant=sand-m",
    },
    {
        "sku": "CNV-WKND-OLV",
        "name": "Canvas Weekender Bag — Olive",
        "quantity": 2,
        "price": "64.75",
        "image_url": f"{_SHOP}/images/canvas-weekender-olive.jpg",
        "url": f"{_SHOP}/products/canvas-weekender?variant=olive",
    },
]


def _sample_cart() -> dict[str, Any]:
    return {
        "cart_id": "cart_8842",
        "items": [dict(item) for item in _SAMPLE_ITEMS],
        "total": 188.5,
        "currency": "USD",
        "restore_url": f"{_SHOP}/cart/restore/cart_8842?token=r3st0re-s1gned",
    }


def _sample_catalog() -> dict[str, Any]:
    """What ``catalog`` holds at send time for the sample cart: one item low in stock and in a
    store near the customer, one the catalog has never heard of."""
    store = {
        "store_id": "kadikoy",
        "name": "Kadıköy",
        "address": "Moda Cd. 12",
        "distance_km": 1.2,
        "quantity": 2,
        "pickup_url": f"{_SHOP}/pickup?sku=LIN-SHIRT-SAND-M&store=kadikoy",
    }
    known = {
        "sku": "LIN-SHIRT-SAND-M", "known": True, "name": "Linen Shirt — Sand, M",
        "url": f"{_SHOP}/products/linen-shirt?variant=sand-m", "image_url": f"{_SHOP}/images/linen-shirt-sand.jpg",
        "price": 59.0, "currency": "USD", "lowest_price_30d": 55.0, "in_stock": True,
        "stock": {"total": 2, "online": 0, "stores": {"kadikoy": 2}}, "stores": [store], "pickup": store,
    }
    unknown = {
        "sku": "CNV-WKND-OLV", "known": False, "name": None, "url": None, "image_url": None, "price": None,
        "currency": None, "lowest_price_30d": None, "in_stock": True,
        "stock": {"total": None, "online": None, "stores": {}}, "stores": [], "pickup": None,
    }
    return {"LIN-SHIRT-SAND-M": known, "CNV-WKND-OLV": unknown}


def _sample_properties(event_type: str) -> dict[str, Any]:
    cart = _sample_cart()
    product = {
        "sku": "LIN-SHIRT-SAND-M",
        "name": "Linen Shirt — Sand",
        "price": 59.0,
        "url": f"{_SHOP}/products/linen-shirt",
        "image_url": f"{_SHOP}/images/linen-shirt-sand.jpg",
    }
    samples: dict[str, dict[str, Any]] = {
        "cart_updated": cart,
        "checkout_started": {**cart, "checkout_id": "chk_5521"},
        "order_placed": {
            "order_id": "ord_1207",
            "cart_id": cart["cart_id"],
            "items": cart["items"],
            "total": cart["total"],
            "currency": cart["currency"],
        },
        "product_viewed": product,
        "customer_updated": {"first_name": "Maya", "timezone": "America/New_York", "locale": "en-US"},
        "consent_changed": {"channel": "sms", "granted": True},
        "back_in_stock": {**product, "currency": "USD", "location": "online", "quantity": 12},
        "price_dropped": {**product, "price": 49.0, "reference_price": 59.0, "drop_percent": 16.9, "currency": "USD"},
    }
    if event_type in samples:
        return samples[event_type]
    if event_type.startswith("message_"):
        return {"channel": "email", "message_id": "msg_sample", "journey": "abandoned_cart"}
    return {}


def sample_context(template: Template | None = None, trigger_event: str = "checkout_started") -> dict[str, Any]:
    """A realistic context for previews and for proving that a template renders.

    With a template, it has exactly what a real send of that template has: ``discount`` only when the
    template issues one, ``unsubscribe_url`` only for email. Without one, it has everything.
    """
    channel = template.channel if template is not None else "email"
    context: dict[str, Any] = {
        "customer": {
            "id": "cus_42",
            "email": "maya.lopez@example.com",
            "phone": "+14155550142",
            "first_name": "Maya",
            "locale": "en-US",
            "timezone": "America/New_York",
            "consent": {"email": True, "sms": True, "push": True},
            "push_tokens": ["fcm-token-sample-1"],
        },
        "cart": _sample_cart(),
        "trigger": {
            "id": "evt_01HXSAMPLE",
            "type": trigger_event,
            "customer_id": "cus_42",
            "timestamp": "2026-11-22T10:00:00-05:00",
            "source": "web",
            "properties": _sample_properties(trigger_event),
        },
        "journey": {"name": "abandoned_cart", "run_id": "run_sample", "step_id": "first_reminder"},
        "message": {"id": "msg_sample", "channel": channel, "locale": DEFAULT_LOCALE},
        "catalog": _sample_catalog(),
    }
    percent = template.discount_percent if isinstance(template, EmailTemplate) else None
    if template is None or percent:
        context["discount"] = {"code": "COMEBACK-7KQ2M", "percent": percent or 10}
    if template is None or isinstance(template, EmailTemplate):
        context["unsubscribe_url"] = f"{_SHOP}/v1/unsubscribe/sample-signed-token"
    return context


# --- plain text from HTML --------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "hr", "tr", "table", "thead", "tbody", "tfoot", "ul", "ol", "blockquote"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "section", "header", "footer", "article"}
)
_SKIPPED_TAGS = frozenset({"head", "style", "script", "title"})
_HTML_SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML's ASCII whitespace; U+00A0 and U+202F are not


class _TextExtractor(HTMLParser):
    """Keeps an email's words and links and drops its layout: the text part of a multipart email."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0
        self._link: tuple[str, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag in ("td", "th"):
            self.chunks.append(" ")
        elif tag == "a":
            self._link = (dict(attrs).get("href") or "", len(self.chunks))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")
        elif tag == "a" and self._link is not None:
            href, start = self._link
            self._link = None
            label = " ".join("".join(self.chunks[start:]).split())
            del self.chunks[start:]
            if href and label and label != href and not href.startswith("#"):
                self.chunks.append(f"{label} ({href})")
            elif label:
                self.chunks.append(label)
            # A link around an image only has no words: the same link is always written out nearby.

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            # As in a browser, a run of spaces and newlines in the source is one space; a no-break
            # space (Russian "1 234,50 ₽", written by the money filter) is a character, kept.
            self.chunks.append(_HTML_SPACES.sub(" ", data))


def html_to_text(html: str) -> str:
    """The text an email client shows when it cannot show HTML: words, line breaks and link URLs."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [_HTML_SPACES.sub(" ", line).strip(" ") for line in "".join(parser.chunks).splitlines()]
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


__all__ = [
    "CONTEXT_NAMES",
    "RenderedParts",
    "TemplateError",
    "check_template",
    "html_to_text",
    "money",
    "render_template",
    "sample_context",
    "text_fields",
    "variable_uses",
]

def template_paths(template: Template) -> list[tuple[Any, ...]]:
    """Every variable path any part of the template reads (``('cart', 'items')``), from Liquid's
    static analysis; the same template object is asked many times, so the answer is cached on it."""
    cached = _PATHS.get(id(template))
    if cached is not None and cached[0] is template:
        return cached[1]
    paths: list[tuple[Any, ...]] = []
    for _field, source, html in template_sources(template):
        for uses in _parse(source, html).analyze().globals.values():
            paths.extend(_frozen(use.segments) for use in uses)
    paths = list(dict.fromkeys(paths))  # each path once, however often the template prints it
    _PATHS[id(template)] = (template, paths)
    return paths


_PATHS: dict[int, tuple[Template, list[tuple[Any, ...]]]] = {}


def _frozen(segments: Any) -> tuple[Any, ...]:
    """A path as a tuple; a computed index (``catalog[item.sku]``) is a nested path, made a tuple too."""
    return tuple(_frozen(segment) if isinstance(segment, list) else segment for segment in segments)


# For the type checks of ``omnicart.journey.template_types``, which render and parse the same way.
line_column = _line_column
parse_source = _parse
render_field = _render_field
