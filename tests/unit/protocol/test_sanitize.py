"""Remote HTML sanitising: XSS vectors, real-world shapes from other servers, and properties."""

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.sanitize import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    DEFAULT_MAX_HTML_LENGTH,
    LINK_REL,
    LINK_SCHEMES,
    HtmlTooLong,
    html_to_text,
    sanitize_html,
)

REL = f'rel="{LINK_REL}"'


class _Collector(HTMLParser):
    """Records every element, attribute and comment Python's own parser sees."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def _scheme(url: str) -> str | None:
    """Read a URL's scheme the way a browser does: C0/space trimmed, tab and newline ignored."""
    url = re.sub(r"[\t\n\r]", "", url.strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r"
                                            "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"
                                            "\x1a\x1b\x1c\x1d\x1e\x1f "))  # fmt: skip
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", url)
    return match.group(1).lower() if match else None


def _assert_inert(output: str) -> None:
    """Fail unless the HTML holds only allowed elements, attributes and link schemes."""
    collector = _Collector()
    collector.feed(output)
    collector.close()
    assert collector.comments == []
    for tag, attrs in collector.elements:
        assert tag in ALLOWED_TAGS, (tag, output)
        names = [name for name, _ in attrs]
        assert set(names) <= ALLOWED_ATTRIBUTES.get(tag, frozenset()), (tag, attrs, output)
        values = dict(attrs)
        if tag == "a":
            assert values.get("rel") == LINK_REL, output
            assert _scheme(values.get("href") or "") in LINK_SCHEMES, output
        if "translate" in values:
            assert values["translate"] == "no"


# OWASP filter-evasion classics and later mutation-XSS finds; none may come out executable.
XSS_VECTORS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://xss.example/xss.js></SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script>alert(1)",
    "<<script>alert(1);//<</script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>">',
    "<img src=x onerror=alert(1)>",
    "<img src=x onerror=alert(1)//",
    '<IMG SRC="javascript:alert(1);">',
    "<IMG SRC=JaVaScRiPt:alert(1)>",
    "<img src=x onerror=&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114"
    "&#0000105&#0000112&#0000116&#0000058alert(1)>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<svg><p><style><img src=x onerror=alert(1)></style></p></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input onfocus=alert(1) autofocus>",
    "<xss onafterscriptexecute=alert(1)><script>1</script>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JAVASCRIPT:alert(1)">x</a>',
    '<a href="  JaVaScRiPt:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="jav&#x0D;ascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    '<a href="\x01javascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)">x</a>',
    '<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105'
    '&#0000112&#0000116&#0000058alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="javascript://%0aalert(1)">x</a>',
    "<a href=javascript:alert(1)>x</a>",
    "<a href='javascript:alert(1)'>x</a>",
    "<A HREF=javascript:alert(1)>x</A>",
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="DATA:text/html,<script>alert(1)</script>">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="https://ok.example" onclick="alert(1)">x</a>',
    '<a href="https://ok.example" onmouseover=alert(1)>x</a>',
    '<a href="https://ok.example"/onclick=alert(1)>x</a>',
    '<a href="https://ok.example" xlink:href="javascript:alert(1)">x</a>',
    '<a href="https://ok.example" style="position:fixed;top:0">x</a>',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<span style="width: expression(alert(1))">x</span>',
    '<div style="behavior: url(xss.htc)">x</div>',
    "<style>@import 'https://xss.example/x.css';</style>",
    "<style>body{background:url(javascript:alert(1))}</style>",
    "<!--<script>alert(1)</script>-->",
    "<!--[if gte IE 4]><script>alert(1)</script><![endif]-->",
    "<!-- --!><script>alert(1)</script> -->",
    "<p>a<!-- x --><img src=x onerror=alert(1)>b</p>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<template><script>alert(1)</script></template>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<form><button formaction=javascript:alert(1)>x</button></form>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<link rel=stylesheet href="javascript:alert(1)">',
    "<textarea><script>alert(1)</script></textarea>",
    "<b><i><u><p><a href=javascript:alert(1)>x</b></i></u></p>",
    "<p><a href=https://ok.example><a href=javascript:alert(1)>y</a></a></p>",
    "<table><a href=javascript:alert(1)><td>x</td></a></table>",
    '<a href="https://ok.example" class="x" id="y" data-x="1" tabindex="1">x</a>',
    '<span class="h-card" onmouseover="alert(1)" lang="en" dir="rtl">x</span>',
]


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_xss_vector_comes_out_inert(vector: str) -> None:
    output = sanitize_html(vector)
    _assert_inert(output)
    assert "javascript" not in " ".join(re.findall(r'="[^"]*"', output)).lower()
    assert "<script" not in output.lower()


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ("<script>alert(1)</script>safe", "safe"),
        ("<svg onload=alert(1)><g>x</g></svg>after", "after"),
        ("<style>p{color:red}</style><p>x</p>", "<p>x</p>"),
        ("<img src=x onerror=alert(1)>text", "text"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ('<a href="jav&#x09;ascript:alert(1)">click</a>', "click"),
        ('<a href="data:text/html,hi">click</a>', "click"),
        ('<p style="color:red" onclick="x()">p</p>', "<p>p</p>"),
        ("<p>a<!-- <script>alert(1)</script> -->b</p>", "<p>ab</p>"),
        ("<textarea><script>alert(1)</script></textarea>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("<P>Mixed <STRONG>Case</STRONG></P>", "<p>Mixed <strong>Case</strong></p>"),
        ("<p>unclosed <em>emphasis", "<p>unclosed <em>emphasis</em></p>"),
    ],
)
def test_xss_vector_leaves_only_its_text(vector: str, expected: str) -> None:
    assert sanitize_html(vector) == expected


def test_mastodon_mention_hashtag_and_shortened_link_are_preserved() -> None:
    # The shape Mastodon 4.x emits in Note.content (TextFormatter, LinkDetailsExtractor).
    content = (
        '<p><span class="h-card" translate="no"><a href="https://mastodon.social/@Gargron" '
        'class="u-url mention">@<span>Gargron</span></a></span> look at '
        '<a href="https://mastodon.social/tags/fediverse" class="mention hashtag" rel="tag">'
        "#<span>fediverse</span></a> and "
        '<a href="https://example.com/a/very/long/path/to/read" target="_blank" '
        'rel="nofollow noopener noreferrer" translate="no"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.com/a/very/long/pat</span>'
        '<span class="invisible">h/to/read</span></a></p>'
    )
    assert sanitize_html(content) == (
        '<p><span class="h-card" translate="no"><a href="https://mastodon.social/@Gargron" '
        f'class="u-url mention" {REL}>@<span>Gargron</span></a></span> look at '
        f'<a href="https://mastodon.social/tags/fediverse" class="mention hashtag" {REL}>'
        "#<span>fediverse</span></a> and "
        f'<a href="https://example.com/a/very/long/path/to/read" translate="no" {REL}>'
        '<span class="invisible">https://</span>'
        '<span class="ellipsis">example.com/a/very/long/pat</span>'
        '<span class="invisible">h/to/read</span></a></p>'
    )


def test_mastodon_quote_fallback_paragraph_keeps_its_class() -> None:
    content = (
        '<p class="quote-inline">RE: <a href="https://mastodon.social/@a/1">'
        "https://mastodon.social/@a/1</a></p><p>quoted</p>"
    )
    assert sanitize_html(content) == (
        f'<p class="quote-inline">RE: <a href="https://mastodon.social/@a/1" {REL}>'
        "https://mastodon.social/@a/1</a></p><p>quoted</p>"
    )


def test_akkoma_mention_and_hashtag_lose_data_attributes_and_sender_rel() -> None:
    # The shape Pleroma/Akkoma emit: <br/>, data-user/data-tag, rel="ugc".
    content = (
        '<p>hello<br/>world <span class="h-card"><a class="u-url mention" '
        'data-user="9uw4lDtkO4v8aMF1Ka" href="https://akkoma.example/users/lain" rel="ugc">'
        '@<span>lain</span></a></span> <a class="hashtag" data-tag="akkoma" '
        'href="https://akkoma.example/tag/akkoma" rel="tag ugc">#akkoma</a></p>'
    )
    assert sanitize_html(content) == (
        '<p>hello<br>world <span class="h-card"><a class="u-url mention" '
        f'href="https://akkoma.example/users/lain" {REL}>@<span>lain</span></a></span> '
        f'<a class="hashtag" href="https://akkoma.example/tag/akkoma" {REL}>#akkoma</a></p>'
    )


def test_misskey_plain_paragraph_with_line_breaks_is_preserved() -> None:
    # The shape Misskey's MFM-to-HTML emits: one <p>, <br> for newlines, bare mention links.
    content = (
        '<p>first line <a href="https://misskey.example/@alice" class="u-url mention">@alice</a>'
        '<br>second line <a href="https://misskey.example/tags/misskey" rel="tag">#misskey</a>'
        "<br><br>after a blank line</p>"
    )
    assert sanitize_html(content) == (
        '<p>first line <a href="https://misskey.example/@alice" class="u-url mention" '
        f'{REL}>@alice</a><br>second line <a href="https://misskey.example/tags/misskey" '
        f"{REL}>#misskey</a><br><br>after a blank line</p>"
    )


def test_formatting_lists_quotes_and_code_are_preserved() -> None:
    content = (
        "<blockquote><p><em>e</em> <strong>s</strong> <b>b</b> <i>i</i> <u>u</u> "
        "<del>d</del> <code>c</code></p></blockquote><pre><code>x = 1\n</code></pre>"
        '<ol start="3" reversed><li value="7">seven</li></ol><ul><li>dot</li></ul>'
    )
    assert sanitize_html(content) == (
        "<blockquote><p><em>e</em> <strong>s</strong> <b>b</b> <i>i</i> <u>u</u> "
        "<del>d</del> <code>c</code></p></blockquote><pre><code>x = 1\n</code></pre>"
        '<ol start="3" reversed=""><li value="7">seven</li></ol><ul><li>dot</li></ul>'
    )


def test_list_numbers_that_are_not_integers_are_removed() -> None:
    content = '<ol start="x"><li value="1e9">a</li><li value=" 2 ">b</li></ol>'
    assert sanitize_html(content) == '<ol><li>a</li><li value="2">b</li></ol>'


def test_headings_become_strong_paragraphs_like_mastodon() -> None:
    assert sanitize_html("<h1>Title</h1><h6>small</h6>") == (
        "<p><strong>Title</strong></p><p><strong>small</strong></p>"
    )


def test_disallowed_elements_are_unwrapped_keeping_their_text() -> None:
    content = (
        '<div><img src="https://x.example/a.png" alt="alt">hi <table><tr><td>cell</td></tr>'
        "</table> <s>s</s> <sup>2</sup></div>"
    )
    assert sanitize_html(content) == "hi cell s 2"


@pytest.mark.parametrize(
    "element",
    [
        "<script>hidden</script>",
        "<style>hidden</style>",
        "<iframe>hidden</iframe>",
        "<object>hidden</object>",
        '<embed src="https://x.example/a.swf">',  # void: it has no content to drop
        "<template>hidden</template>",
        "<svg><text>hidden</text></svg>",
        "<math><mi>hidden</mi></math>",
    ],
)
def test_executable_and_foreign_elements_are_dropped_with_their_content(element: str) -> None:
    assert sanitize_html(f"<p>a{element}b</p>") == "<p>ab</p>"


def test_classes_outside_mastodons_list_are_removed() -> None:
    content = (
        '<span class="h-card p-name u-photo dt-published e-content mention hashtag invisible '
        'ellipsis quote-inline evil status__content">x</span><span class="evil">y</span>'
    )
    assert sanitize_html(content) == (
        '<span class="h-card p-name u-photo dt-published e-content mention hashtag invisible '
        'ellipsis quote-inline">x</span><span>y</span>'
    )


def test_translate_is_kept_only_when_it_says_no() -> None:
    assert sanitize_html('<span translate="no">a</span><span translate="yes">b</span>') == (
        '<span translate="no">a</span><span>b</span>'
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://example.com/path?q=1#frag",
        "HTTPS://EXAMPLE.COM/",
        "dat://778f8d955175c92e4ced5e4f5563f69bfec0c86cc6f670352c457943666fe639/",
        "dweb:/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "ipns://example.com",
        "ssb:message/sha256/g3hPVPDEO1Aj_uPl0-J2NlhFB2bbFLIHlty-YuqFZ3w=",
        "gopher://gopher.floodgap.com/",
        "xmpp:alice@example.com",
        "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a",
        "gemini://geminiprotocol.net/",
    ],
)
def test_links_with_allowed_schemes_are_kept(url: str) -> None:
    output = sanitize_html(f'<a href="{url}">link</a>')
    assert output == f'<a href="{url}" {REL}>link</a>'


@pytest.mark.parametrize(
    "url",
    [
        "mailto:alice@example.com",
        "ftp://example.com/",
        "tel:+15555550100",
        "file:///etc/passwd",
        "/relative/path",
        "//example.com/protocol-relative",
        "#fragment",
        "",
    ],
)
def test_links_with_other_schemes_or_relative_become_plain_text(url: str) -> None:
    assert sanitize_html(f'<p><a href="{url}">l<em>in</em>k</a></p>') == "<p>l<em>in</em>k</p>"


def test_link_without_href_becomes_plain_text() -> None:
    assert sanitize_html('<a name="anchor" class="mention">text</a>') == "text"


def test_rel_is_forced_and_target_removed_on_every_link() -> None:
    content = '<a href="https://example.com/" rel="me opener" target="_self">x</a>'
    assert sanitize_html(content) == f'<a href="https://example.com/" {REL}>x</a>'


def test_text_that_looks_like_markup_stays_escaped() -> None:
    assert sanitize_html("if a < b && c > d") == "if a &lt; b &amp;&amp; c &gt; d"
    assert sanitize_html("<p>&lt;script&gt;</p>") == "<p>&lt;script&gt;</p>"


def test_pre_with_leading_blank_line_survives_a_second_pass() -> None:
    once = sanitize_html("<pre>\n\nindented</pre>")
    assert sanitize_html(once) == once


@pytest.mark.parametrize(
    "content",
    [
        "<li><table><td><li>x",
        "<a href=https://a.example/><table><td><a href=https://b.example/>x",
        "<li><h1>x<p>y</h1>",
        "<h1>a<pre>\n\nb</pre></h1>",
        "<h1><ul><li>a<h2><blockquote>q<h3><p>z",
        "<p><b>x</p><h1>y",
    ],
)
def test_nesting_a_parser_would_rebuild_is_settled_in_one_call(content: str) -> None:
    # Removing a table can leave <li> in <li> or <a> in <a>; a browser parsing our output would
    # build another tree than the one we checked.
    once = sanitize_html(content)
    _assert_inert(once)
    assert sanitize_html(once) == once


def test_empty_input_gives_empty_output() -> None:
    assert sanitize_html("") == ""
    assert html_to_text("") == ""


def test_input_at_the_limit_is_sanitised() -> None:
    assert sanitize_html("a" * 10, max_length=10) == "a" * 10


def test_input_over_the_limit_is_refused_with_a_reason() -> None:
    with pytest.raises(HtmlTooLong, match="11 characters; the limit is 10"):
        sanitize_html("a" * 11, max_length=10)
    with pytest.raises(ProtocolError):
        html_to_text("a" * (DEFAULT_MAX_HTML_LENGTH + 1))


def test_content_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ProtocolError, match="must be a string, not list"):
        sanitize_html(["<p>x</p>"])  # type: ignore[arg-type]


def test_text_of_paragraphs_breaks_and_entities() -> None:
    content = "<p>Hello &amp; welcome,<br>friend</p>\n<p>second   paragraph</p>"
    assert html_to_text(content) == "Hello & welcome,\nfriend\n\nsecond paragraph"


def test_text_of_mastodon_post_keeps_full_urls_and_mentions() -> None:
    content = (
        '<p><span class="h-card"><a href="https://m.example/@bob" class="u-url mention">'
        "@<span>bob</span></a></span> see "
        '<a href="https://example.com/long/path"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.com/lo</span><span class="invisible">ng/path</span>'
        "</a></p>"
    )
    assert html_to_text(content) == "@bob see https://example.com/long/path"


def test_text_of_lists_code_and_headings() -> None:
    content = "<h2>Title</h2><ul><li>one</li><li>two</li></ul><pre>  indented\n  code</pre>end"
    assert html_to_text(content) == "Title\n\none\ntwo\n\n  indented\n  code\n\nend"


def test_text_leaves_out_scripts_styles_and_comments() -> None:
    content = "<p>a<script>alert(1)</script><style>p{}</style><!-- hidden -->b</p>"
    assert html_to_text(content) == "ab"


def test_text_is_not_escaped_html() -> None:
    assert html_to_text("<p>1 &lt; 2 &amp;&amp; <b>bold</b></p>") == "1 < 2 && bold"


# Fragments that make tag soup: text from st.text() rarely contains a tag at all.
_SOUP = st.lists(
    st.sampled_from(
        [
            "<",
            ">",
            "/",
            "</",
            "/>",
            "<!--",
            "-->",
            "<![CDATA[",
            "]]>",
            "=",
            '"',
            "'",
            " ",
            "\t",
            "\n",
            "&",
            "&#x09;",
            "&#106;",
            "&lt;",
            "&amp;",
            ";",
            "a",
            "p",
            "pre",
            "h1",
            "span",
            "script",
            "style",
            "svg",
            "math",
            "iframe",
            "img",
            "table",
            "td",
            "ol",
            "li",
            "textarea",
            "noscript",
            "template",
            "select",
            "option",
            "href",
            "src",
            "class",
            "onerror",
            "onload",
            "style",
            "start",
            "value",
            "translate",
            "no",
            "mention",
            "h-card",
            "u-url",
            "evil",
            "javascript:",
            "JaVaScRiPt:",
            "data:",
            "https://x.example/",
            "http:",
            "mailto:",
            "alert(1)",
            "x",
        ]
    ),
    max_size=40,
).map("".join)

_HTML_LIKE = st.one_of(st.text(), _SOUP)


@settings(max_examples=500, deadline=None)
@given(_HTML_LIKE)
def test_any_input_comes_out_inside_the_allow_list(html: str) -> None:
    _assert_inert(sanitize_html(html))


@settings(max_examples=500, deadline=None)
@given(_HTML_LIKE)
def test_sanitising_twice_equals_sanitising_once(html: str) -> None:
    once = sanitize_html(html)
    assert sanitize_html(once) == once


@settings(max_examples=200, deadline=None)
@given(_HTML_LIKE)
def test_text_extraction_accepts_any_input_and_trims_blank_space(html: str) -> None:
    text = html_to_text(html)
    assert text == text.strip()
