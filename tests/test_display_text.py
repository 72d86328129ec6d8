"""User and file text is shown literally: Markdown escaped, hidden characters visible, length bounded."""

from __future__ import annotations

import re
import string

import pytest

from activekd_core.display_text import MD_INLINE, NAME_MAX, WORD_JOINER, check_name, code, md, visible

HOSTILE = [
    "a`b``c",
    "![x](http://evil.test/pixel.png)",
    "[support desk](http://evil.test/phish)",
    "<img src=x onerror=alert(1)><a href='http://evil.test'>x</a>",
    ":blue[big] :material/home: $x^2$ ~~gone~~ **bold** _it_",
    "# heading\n- item\n1. one",
    "www.evil.test http://evil.test mail@evil.test",
    "\\[not a link\\](http://evil.test)",
]


def _unescape(text: str) -> str:
    """CommonMark backslash escapes and the invisible word joiners removed (what a reader sees)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text).replace(WORD_JOINER, "")


@pytest.mark.parametrize("text", HOSTILE)
def test_md_escapes_every_markdown_opener_and_shows_the_same_text(text: str) -> None:
    out = md(text, limit=10_000, keep_newlines=True)
    # no character that opens inline syntax is left unescaped: nothing can open a link, image,
    # code span, HTML tag, entity, emphasis, strikethrough, table, directive or math
    i = 0
    while i < len(out):
        if out[i] == "\\":
            assert i + 1 < len(out) and out[i + 1] in string.punctuation, (out, i)
            i += 2
            continue
        assert out[i] not in MD_INLINE, (out, i)
        i += 1
    # no line starts a block (list, heading, quote, setext underline, ordered list)
    for line in out.split("\n"):
        assert not re.match(r"[ \t]*([-+#>=]|\d+[.)])", line), line
    assert _unescape(out).replace("  \n", "\n") == visible(text, limit=10_000, keep_newlines=True)


def test_md_of_links_and_images_renders_their_source_text() -> None:
    assert md("![x](http://h/)").replace(WORD_JOINER, "") == r"!\[x\](http\://h/)"
    assert md("[a](http://x)").replace(WORD_JOINER, "") == r"\[a\](http\://x)"
    assert md("plain name 42") == "plain name 42"
    assert md("missing-weights.safetensors") == "missing-weights.safetensors"  # reads like the text


def test_autolinks_and_shortcodes_are_broken_by_an_invisible_joiner() -> None:
    """GFM links bare URLs, www. names and e-mail addresses found in the parsed text, escapes or not."""
    out = md("http://evil.test HTTPS://x www.evil.test WWW.x a@evil.test :smile:")
    assert not re.search(r"https?\\?:\\?/", out, re.IGNORECASE)  # "http" + ":" + "/" never adjacent
    assert not re.search(r"www\\?\.", out, re.IGNORECASE)
    assert not re.search(r"@\w", out.replace("\\", ""))
    assert ":smile:" not in out.replace("\\", "")
    assert _unescape(out) == "http://evil.test HTTPS://x www.evil.test WWW.x a@evil.test :smile:"
    assert md("_http://x").count(WORD_JOINER) == 1  # GFM links a URL right after "_" too
    for plain in ("plain name", "Demo: textile", "10:30", "a @ b", "time: 3 s; ratio 1:2"):
        assert WORD_JOINER not in md(plain), plain  # find-in-page and copy see the plain text
    assert md("\u2060") == "\\\\u2060"


def test_code_span_cannot_be_closed_by_backticks_in_the_text() -> None:
    assert code("cat.png") == "`cat.png`"
    assert code(" padded ") == "`  padded  `"
    out = code("a`b``c")
    fence = re.match(r"`+", out).group(0)
    assert fence == "```" and out == "```a`b``c```"
    assert "```" not in out[len(fence):-len(fence)]
    assert code("`start") == "`` `start ``"


@pytest.mark.parametrize("ch, shown", [
    ("\u202e", "\\u202e"),   # RIGHT-TO-LEFT OVERRIDE
    ("\u2066", "\\u2066"),   # LEFT-TO-RIGHT ISOLATE
    ("\u200b", "\\u200b"),   # ZERO WIDTH SPACE
    ("\u200d", "\\u200d"),   # ZERO WIDTH JOINER
    ("\ufeff", "\\ufeff"),   # BOM / ZERO WIDTH NO-BREAK SPACE
    ("\x1b", "\\x1b"),       # ESC
    ("\x00", "\\x00"),
    ("\n", "\\n"),
    ("\u2028", "\\u2028"),   # LINE SEPARATOR
    ("\udcff", "\\udcff"),   # an undecodable byte of a file name (surrogateescape)
    ("\u3164", "\\u3164"),   # HANGUL FILLER (an invisible letter)
])
def test_hidden_characters_become_visible_escapes(ch: str, shown: str) -> None:
    assert visible(f"gpj.{ch}exe") == f"gpj.{shown}exe"
    assert ch not in md(f"a{ch}b")


def test_bidi_override_cannot_reorder_a_file_name() -> None:
    name = "invoice_\u202egnp.exe"
    out = visible(name)
    assert "\u202e" not in out and out == "invoice_\\u202egnp.exe"


def test_plain_unicode_is_left_alone() -> None:
    for text in ("Défaut global", "缺陷", "Ελληνικά", "naïve café"):
        assert visible(text) == text
        assert md(text) == text


def test_keep_newlines_for_messages() -> None:
    assert visible("line 1\nline 2\u202e", keep_newlines=True) == "line 1\nline 2\\u202e"
    assert md("a\n# b\n2. c", keep_newlines=True) == "a  \n\\# b  \n2\\. c"


def test_a_200000_character_name_is_bounded() -> None:
    huge = "A" * 200_000
    out = md(huge)
    shown = visible(huge, limit=50)
    assert len(out) == 200 and out.endswith("…")
    assert len(shown) == 50 and shown == "A" * 49 + "…"
    assert len(code(huge)) <= 200 + 4


def test_bound_counts_the_escapes() -> None:
    out = visible("\u200b" * 1000, limit=30)
    assert len(out) == 30 and out.endswith("…")


def test_check_name_bounds_length_and_refuses_hidden_characters() -> None:
    assert check_name("  Dr. Ada  ", "annotator name") == "Dr. Ada"
    assert check_name("x" * NAME_MAX, "class name") == "x" * NAME_MAX
    with pytest.raises(ValueError, match=r"200,000 characters long; at most 120"):
        check_name("x" * 200_000, "annotator name")
    with pytest.raises(ValueError, match="invisible or control characters.*u202e"):
        check_name("ada\u202e", "annotator name")
    with pytest.raises(ValueError, match="blank"):
        check_name(" \t", "project name")


def test_short_time_is_readable() -> None:
    from activekd_core.display_text import short_time

    assert short_time("2026-11-29T21:40:03.123456+00:00") == "2026-11-29 21:40:03 UTC"
    assert short_time("2026-11-29T22:40:03.5+01:00") == "2026-11-29 21:40:03 UTC"
    assert short_time(None) == "—" and short_time("") == "—"
    assert short_time("not a time\u202e") == "not a time\\u202e"
