"""Remote HTML (post content, actor summaries, profile field values) cut down to an allow-list."""

import re
from html import escape
from html.parser import HTMLParser

import nh3

from protocol.errors import ProtocolError

# A 500-character Mastodon post with every word linked is a few kilobytes of HTML; this leaves
# room for long-form articles. Beyond it the caller decides (truncate, drop, refuse the activity).
DEFAULT_MAX_HTML_LENGTH = 100_000

# The elements a post may keep; everything else is unwrapped and its text kept.
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "span", "a", "del", "pre", "code", "em", "strong", "b", "i", "u",
        "ul", "ol", "li", "blockquote",
    }
)  # fmt: skip

# Mastodon turns a heading into <p><strong>: the emphasis survives, page structure does not.
HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

# Elements whose content is code or out-of-band data, never prose: dropped with their text.
# (Mastodon renders <math> from its TeX annotation, FEP-dc88; we drop it instead.)
DROPPED_CONTENT_TAGS = frozenset(
    {"script", "style", "iframe", "object", "embed", "template", "svg", "math"}
)

# What may appear on each element in our output. `rel` is not taken from the sender: it is forced.
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "rel", "class", "translate"}),
    "span": frozenset({"class", "translate"}),
    # Mastodon's quote posts mark their "RE: <link>" fallback with <p class="quote-inline">.
    "p": frozenset({"class"}),
    "ol": frozenset({"start", "reversed"}),
    "li": frozenset({"value"}),
}

# Mastodon's LINK_PROTOCOLS. Relative links are removed: a remote post has no base we trust.
LINK_SCHEMES = frozenset(
    {"http", "https", "dat", "dweb", "ipfs", "ipns", "ssb", "gopher", "xmpp", "magnet", "gemini"}
)

# Forced on every link. Mastodon adds "nofollow noopener" and target="_blank"; we add noreferrer
# instead of a target, so a reader's instance URL does not leak to the linked site, and how a link
# opens stays the client's choice.
LINK_REL = "nofollow noopener noreferrer"

# Classes kept on a/span/p: microformats (h-card, u-url, p-name, dt-published, e-content…),
# Mastodon's mention/hashtag markers, its link-shortening spans and the quote fallback.
_MICROFORMAT_CLASS = re.compile(r"(?:h|p|u|dt|e)-")
_SEMANTIC_CLASSES = frozenset({"mention", "hashtag", "ellipsis", "invisible", "quote-inline"})
# HTML splits class lists on ASCII whitespace only.
_CLASS_SEPARATOR = re.compile(r"[\t\n\f\r ]+")
_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
# Only "no" means something (do not machine-translate this name or URL); Mastodon drops the rest.
_TRANSLATE_VALUES = {"no"}


# Even deep nesting settled in one extra pass when tried; more than this is deliberate, stop.
_MAX_EXTRA_PASSES = 4


class HtmlTooLong(ProtocolError):
    """Remote HTML longer than the caller's limit; refused before it is parsed."""


def sanitize_html(html: str, max_length: int = DEFAULT_MAX_HTML_LENGTH) -> str:
    """Return remote HTML reduced to the allow-list, safe to embed in our pages and API answers."""
    _check_input(html, max_length)
    output = _sanitize_once(html)
    # Parsing our output again can build another tree: removing table cells can leave an <li>
    # in an <li> or an <a> in an <a>, and a heading that held a paragraph becomes a <p> in a <p>.
    # Each pass is safe on its own; repeating until nothing changes makes the result what a
    # browser will build from it, so sanitising it again is a no-op.
    for _ in range(_MAX_EXTRA_PASSES):
        again = _sanitize_once(output)
        if again == output:
            break
        output = again
    return output


def html_to_text(html: str, max_length: int = DEFAULT_MAX_HTML_LENGTH) -> str:
    """Return the readable text of remote HTML; it is unescaped, so escape it before use in HTML."""
    extractor = _TextExtractor()
    extractor.feed(sanitize_html(html, max_length))
    extractor.close()
    return extractor.text()


def _sanitize_once(html: str) -> str:
    """Run nh3 with our allow-list, then the rewrites it cannot express."""
    rewriter = _Rewriter()
    rewriter.feed(_CLEANER.clean(html))
    rewriter.close()
    return "".join(rewriter.out)


def _check_input(html: object, max_length: int) -> None:
    """Refuse what is not a string or is longer than the limit."""
    # Content comes from JSON; a peer can send a list or an object where a string belongs.
    if not isinstance(html, str):
        raise ProtocolError(f"HTML content must be a string, not {type(html).__name__}")
    if len(html) > max_length:
        raise HtmlTooLong(f"HTML content is {len(html)} characters; the limit is {max_length}")


def _filter_attribute(tag: str, name: str, value: str) -> str | None:
    """Keep an allowed attribute's value, rewrite it, or return None to drop it."""
    if name == "class":
        kept = [c for c in _CLASS_SEPARATOR.split(value) if _is_allowed_class(c)]
        return " ".join(kept) or None
    if name in ("start", "value"):
        value = value.strip()
        return value if _INTEGER.fullmatch(value) else None
    if name == "reversed":
        return ""  # a boolean attribute: its value means nothing
    return value


def _is_allowed_class(name: str) -> bool:
    """Say whether a class name is one Mastodon lets through."""
    return name in _SEMANTIC_CLASSES or _MICROFORMAT_CLASS.match(name) is not None


_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS | HEADING_TAGS),
    clean_content_tags=set(DROPPED_CONTENT_TAGS),
    # rel is added by link_rel, translate is limited by tag_attribute_values; nh3 refuses an
    # attribute listed both here and there.
    attributes={
        tag: set(names - {"rel", "translate"}) for tag, names in ALLOWED_ATTRIBUTES.items()
    },
    tag_attribute_values={
        "a": {"translate": _TRANSLATE_VALUES},
        "span": {"translate": _TRANSLATE_VALUES},
    },
    attribute_filter=_filter_attribute,
    strip_comments=True,
    link_rel=LINK_REL,
    url_schemes=set(LINK_SCHEMES),
    url_relative="deny",
)


class _Rewriter(HTMLParser):
    """Second pass over nh3's output for what nh3 cannot express: renaming and unlinking."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        # One entry per open <a>: whether its start tag was written.
        self._links: list[bool] = []
        self._pre_start = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._pre_start = False
        if tag in HEADING_TAGS:
            self.out.append("<p><strong>")
            return
        # Defence in depth: nh3 already held to these lists, so nothing should be dropped here.
        if tag not in ALLOWED_TAGS:
            return
        if tag == "a":
            # Mastodon turns a link whose href was refused (bad scheme, relative, none) into text.
            linked = any(name == "href" for name, _ in attrs)
            self._links.append(linked)
            if not linked:
                return
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset())
        parts = [tag]
        for name, value in attrs:
            if name in allowed:
                parts.append(name if value is None else f'{name}="{escape(value)}"')
        self.out.append(f"<{' '.join(parts)}>")
        # A parser drops the newline right after <pre>; see handle_data.
        self._pre_start = tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        self._pre_start = False
        if tag in HEADING_TAGS:
            self.out.append("</strong></p>")
        elif tag == "a":
            if self._links and self._links.pop():
                self.out.append("</a>")
        elif tag in ALLOWED_TAGS and tag != "br":
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        # nh3 writes "<pre>\nx" for a <pre> whose text starts with a newline; parsed again that
        # newline would be eaten, so sanitising twice would differ from sanitising once.
        if self._pre_start and data.startswith("\n"):
            data = "\n" + data
        self._pre_start = False
        self.out.append(escape(data, quote=False))


# Elements that end a paragraph of text, and those that end a line.
_PARAGRAPH_TAGS = frozenset({"p", "pre", "blockquote", "ul", "ol"})
_LINE_TAGS = frozenset({"li"})
_WHITESPACE = re.compile(r"[\t\n\f\r ]+")


class _TextExtractor(HTMLParser):
    """Collects the text of sanitised HTML, with line breaks where the reader would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._trailing_newlines = 0
        self._pending_newlines = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._write("\n", literal=True)
        elif tag == "pre":
            self._pre_depth += 1
        self._break_for(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        self._break_for(tag)

    def handle_data(self, data: str) -> None:
        if self._pre_depth:
            self._write(data, literal=True)
        else:
            # Source whitespace (indentation, newlines between tags) renders as one space.
            self._write(_WHITESPACE.sub(" ", data), literal=False)

    def text(self) -> str:
        """Return the collected text without leading or trailing blank space."""
        return "".join(self._out).strip()

    def _break_for(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._pending_newlines = 2
        elif tag in _LINE_TAGS:
            self._pending_newlines = max(self._pending_newlines, 1)

    def _write(self, text: str, *, literal: bool) -> None:
        if text.startswith("\n") or (self._pending_newlines and self._out):
            self._strip_trailing_spaces()
        if self._pending_newlines and self._out:
            self._append("\n" * max(0, self._pending_newlines - self._trailing_newlines))
        self._pending_newlines = 0
        if not literal and (not self._out or self._trailing_newlines or self._out[-1][-1] == " "):
            text = text.lstrip(" ")
        self._append(text)

    def _append(self, text: str) -> None:
        if not text:
            return
        self._out.append(text)
        stripped = text.rstrip("\n")
        if stripped:
            self._trailing_newlines = len(text) - len(stripped)
        else:
            self._trailing_newlines += len(text)

    def _strip_trailing_spaces(self) -> None:
        # A space before a line break is invisible in the page and noise in the text.
        while self._out and self._out[-1].endswith(" "):
            self._out[-1] = self._out[-1].rstrip(" ")
            if not self._out[-1]:
                self._out.pop()
