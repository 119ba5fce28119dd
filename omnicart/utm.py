"""UTM parameters on the links of a message, so that the shop's own web analytics agree with ours.

A visit from a reminder email shows up in the shop's analytics as ``utm_source=omnicart``,
``utm_medium=email``, ``utm_campaign=abandoned_cart``, ``utm_content=first_reminder`` (plus
``-<variant>`` when the run is in a split), the same journey, channel and step our own reports
count by. Tagging happens after Liquid rendering, because links are mostly template expressions
(``{{ cart.restore_url }}``), and it is deliberately conservative: a link is changed only by
appending the parameters it lacks, before its fragment, leaving everything the template wrote
(existing parameters, their order and encoding, the fragment) exactly as it was. Never tagged:
schemes other than http(s) (``mailto:``, ``tel:``, ``sms:``, relative links), our own links
(the unsubscribe link: a tag there would only pollute the shop's analytics), hosts outside the
journey's ``domains`` when it lists some, and a parameter the link already carries (the template's
own value wins).

HTML is read with the standard library's parser, and only the start tags of links that gain
parameters are written anew (from the parsed attributes); every other byte of the email stays as
rendered. Links in plain text (an email's text part, an SMS) are found with ``linkify-it-py``, the
link recogniser markdown-it uses, which knows where a URL ends before a full stop or a bracket.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from linkify_it import LinkifyIt

from omnicart.journey.model import Utm
from omnicart.journey.templates import RenderedParts

TAGGED_SCHEMES = frozenset({"http", "https"})
LINK_ATTRIBUTES = {"a": "href", "area": "href"}
"""The HTML elements whose attribute is a link a customer follows (images and styles are not visits)."""


@dataclass(frozen=True)
class UtmTagger:
    """One message's UTM parameters and which of its links get them."""

    parameters: tuple[tuple[str, str], ...]
    domains: tuple[str, ...] = ()
    ours: tuple[str, ...] = ()
    """Prefixes of our own links (the message's unsubscribe link, our API): never tagged."""

    def url(self, url: str) -> str:
        """``url`` with the parameters it lacks appended before its fragment; unchanged when it is not
        a link to tag. Never raises: a link it cannot read is left as the template wrote it."""
        link = url.strip()
        if not link or any(link.startswith(prefix) for prefix in self.ours):
            return url
        try:
            parts = urlsplit(link)
            host = parts.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket: not ours to repair
            return url
        if parts.scheme.lower() not in TAGGED_SCHEMES or not host:
            return url
        if self.domains and not any(host == domain or host.endswith(f".{domain}") for domain in self.domains):
            return url
        present = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
        missing = [(key, value) for key, value in self.parameters if key not in present]
        if not missing:
            return url
        base, hash_mark, fragment = link.partition("#")
        if not parts.path and "?" not in base:
            base += "/"  # https://shop.example and https://shop.example/ are the same page; the second reads better
        separator = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
        tagged = f"{base}{separator}{urlencode(missing, quote_via=quote)}{hash_mark}{fragment}"
        return url.replace(link, tagged, 1)  # keeps any whitespace the template put around it

    def text(self, text: str) -> str:
        """Every http(s) URL in plain text tagged; the words around them unchanged."""
        pieces: list[str] = []
        last = 0
        for match in _recogniser().match(text) or ():
            if match.schema.lower().rstrip(":") not in TAGGED_SCHEMES:
                continue
            pieces += [text[last : match.index], self.url(text[match.index : match.last_index])]
            last = match.last_index
        return "".join([*pieces, text[last:]]) if pieces else text

    def html(self, html: str) -> str:
        """Every ``<a href>`` (and ``<area href>``) tagged; the rest of the markup byte for byte."""
        finder = _LinkTags(html, self.url)
        finder.feed(html)
        finder.close()
        if not finder.replacements:
            return html
        pieces: list[str] = []
        last = 0
        for start, end, tag in finder.replacements:
            pieces += [html[last:start], tag]
            last = end
        return "".join([*pieces, html[last:]])

    def parts(self, parts: RenderedParts) -> RenderedParts:
        """A rendered message with its links tagged: an email's HTML and text, an SMS's body, a push's
        ``url`` (not its image, which nobody visits)."""
        changes: dict[str, str] = {}
        if parts.html is not None:
            changes["html"] = self.html(parts.html)
        for field in ("text", "body"):
            value = getattr(parts, field)
            if value is not None:
                changes[field] = self.text(value)
        if parts.url is not None:
            changes["url"] = self.url(parts.url)
        return parts.model_copy(update=changes)


def utm_tagger(
    utm: Utm,
    *,
    journey: str,
    channel: str,
    step_id: str,
    variant: str | None = None,
    ours: Iterable[str | None] = (),
) -> UtmTagger | None:
    """The tagger for one message of a journey, or None when the journey turned tagging off.

    ``utm_content`` is the step, with ``-<variant>`` for a run in a split variant, so that the shop's
    analytics can compare the arms of an experiment as our report does.
    """
    if not utm.enabled:
        return None
    content = f"{step_id}-{variant}" if variant else step_id
    parameters = (
        ("utm_source", utm.source),
        ("utm_medium", channel),
        ("utm_campaign", utm.campaign or journey),
        ("utm_content", content),
    )
    return UtmTagger(parameters, tuple(utm.domains), tuple(prefix for prefix in ours if prefix))


class _LinkTags(HTMLParser):
    """Finds the start tags of links that gain parameters: (start, end, the tag written anew)."""

    def __init__(self, html: str, tag_url: Callable[[str], str]) -> None:
        super().__init__(convert_charrefs=True)
        self.source = html
        self.tag_url = tag_url
        self.replacements: list[tuple[int, int, str]] = []
        self._line_starts: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = LINK_ATTRIBUTES.get(tag)
        if wanted is None:
            return
        changed = False
        written: list[tuple[str, str | None]] = []
        for name, value in attrs:
            if name == wanted and value is not None:
                tagged = self.tag_url(value)
                changed = changed or tagged != value
                value = tagged
            written.append((name, value))
        original = self.get_starttag_text()
        if not changed or original is None:
            return
        line, column = self.getpos()
        start = self._line_start(line) + column
        end = start + len(original)
        if self.source[start:end] != original:  # never write where we are not sure
            return
        self.replacements.append((start, end, _start_tag(original, tag, written)))

    def _line_start(self, line: int) -> int:
        """Where a 1-based line begins in the source (the parser reports line and column)."""
        if not self._line_starts:
            self._line_starts.append(0)
            newline = self.source.find("\n")
            while newline != -1:
                self._line_starts.append(newline + 1)
                newline = self.source.find("\n", newline + 1)
        return self._line_starts[line - 1]


def _start_tag(original: str, tag: str, attrs: list[tuple[str, str | None]]) -> str:
    written = "".join(f" {name}" if value is None else f' {name}="{escape(value)}"' for name, value in attrs)
    closing = " /" if original.rstrip().endswith("/>") else ""
    return f"<{tag}{written}{closing}>"


_local = threading.local()


def _recogniser() -> LinkifyIt:
    """One link recogniser per thread: it keeps state between calls, and sends render in threads."""
    recogniser: LinkifyIt | None = getattr(_local, "recogniser", None)
    if recogniser is None:
        recogniser = LinkifyIt(options={"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
        _local.recogniser = recogniser
    return recogniser
