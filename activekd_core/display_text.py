"""Show text that came from a file, a folder, a CSV or a person literally, and bound its length.

Streamlit renders most strings it is given (``st.markdown``, ``caption``, ``error``,
``toast``, widget labels, ``help``, radio options) as Markdown, so a name such as
``[support desk](http://x)`` would become a live link and ``![x](http://host/p.png)``
would make every viewer's browser fetch that URL. Every page shows such text through this
module, never by pasting it into a Markdown string:

* :func:`visible` for text elements (``st.text``, tables, select-box options): control,
  bidi-override and zero-width characters become visible escapes (``\\u202e``), length is
  bounded with an ellipsis.
* :func:`md` for Markdown: :func:`visible`, then every character that can open Markdown
  syntax is backslash-escaped (CommonMark allows it for any ASCII punctuation), which
  also defuses Streamlit's extensions (``:blue[...]``, ``:material/x:``, ``$...$``); an
  invisible word joiner defuses GFM autolinks.
* :func:`code` for an inline code span that no backtick in the text can close.
* :func:`plotly_text` for labels of Plotly figures (they read a small HTML subset).
* :func:`check_name` at input: names people type (annotator, project, class) must be
  visible text of bounded length.

No Streamlit import: tested directly.
"""

from __future__ import annotations

import html
import re
import string
import unicodedata

NAME_MAX = 120
"""Longest annotator, project or class name accepted at input (characters)."""

SHOW_MAX = 200
"""Default display bound of one name or id (characters, before escaping)."""

MESSAGE_MAX = 1000
"""Default display bound of an error message that may quote names."""

ELLIPSIS = "…"
WORD_JOINER = "\u2060"
# What GFM and Streamlit find in the text after parsing, where a word joiner goes: the colon of
# an autolink's scheme, the opening colon of an :emoji: or :material/icon: shortcode, the @ of
# an e-mail address, the www of a www. name (matched on the already escaped text).
_AFTER_PARSE = re.compile(
    r"(?:https?|mailto|xmpp)\\:"
    r"|\\:(?=(?:[\w+/-]|\\_)+\\:)"
    r"|(?<=[\w.+-])\\@(?=[\w-])"
    r"|www(?=\.)",
    re.IGNORECASE,
)
# A block marker at the start of a line: list, heading, quote, setext underline, ordered list.
_LINE_START = re.compile(r"^([ \t]*)(?:([-+#>=])|(\d{1,9})([.)]))", re.MULTILINE)

MD_INLINE = frozenset("\\`*_[]<~$:|&@")
"""Characters :func:`md` always escapes: each can open inline Markdown/GFM/Streamlit syntax."""

# Invisible letters (category Lo/So) used to fake blank or look-alike names.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_PUNCTUATION = frozenset(string.punctuation)


def _hidden(ch: str) -> bool:
    """Control (Cc), format (Cf: bidi overrides, zero-width, soft hyphen, tags), surrogate
    (Cs: undecodable bytes of a file name), line/paragraph separators, invisible letters."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") or ch in _INVISIBLE_LETTERS


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: object, limit: int = SHOW_MAX, *, keep_newlines: bool = False) -> str:
    """``text`` as plain characters a reader can see, at most about ``limit`` long.

    Args:
        text: Anything; ``str()`` is applied (``None`` shows as ``"None"``).
        limit: Longest shown length; longer text is cut and ends with ``…``.
        keep_newlines: Keep ``\\n`` (multi-line messages); every other hidden character
            is still escaped.

    Returns:
        The text with each control, bidi, zero-width or other invisible character replaced
        by a visible escape such as ``\\u202e``.
    """
    raw = text if isinstance(text, str) else str(text)
    limit = max(1, int(limit))
    cut = len(raw) > limit
    raw = raw[: limit + 1]  # escaping never needs more than this: bounded work on huge input
    out = "".join(_escape_char(c) if _hidden(c) and not (keep_newlines and c == "\n") else c for c in raw)
    if cut or len(out) > limit:
        out = out[: limit - 1] + ELLIPSIS
    return out


def md(text: object, limit: int = SHOW_MAX, *, keep_newlines: bool = False) -> str:
    """``text`` escaped for Streamlit Markdown so that it renders literally.

    Safe inside ``st.markdown``/``caption``/``error``/``toast``, widget labels, ``help``
    and radio options; not inside a code span (use :func:`code`).

    Backslash-escaped: every character that opens inline syntax anywhere in a line
    (:data:`MD_INLINE`: code, emphasis, strikethrough, links and images, HTML and
    autolinks, entities, tables, math, Streamlit's ``:directives[...]``) and, at the
    start of a line, the characters that open a block (``-``, ``+``, ``#``, ``>``, ``=``,
    ``1.``/``1)``). Other punctuation (``-`` inside a word, ``.``, ``/``, quotes) stays as
    it is, so the Markdown source still reads like the text.

    Backslash escapes do not stop GFM's autolinks (``http://...``, ``www.``, e-mail
    addresses) nor Streamlit's ``:emoji:`` shortcodes: those are found in the text after
    parsing. An invisible WORD JOINER (U+2060) right there (after ``http:``, the first
    colon of ``:name:``, the ``@`` of an address, inside ``www.``) breaks them; it shows
    nothing and :func:`visible` escapes any U+2060 of the text itself, so every U+2060 in
    the output is one of these. Plain text such as ``Demo: textile`` gets none.
    """
    shown = visible(text, limit, keep_newlines=keep_newlines)
    escaped = "".join("\\" + c if c in MD_INLINE else c for c in shown)
    escaped = _AFTER_PARSE.sub(lambda m: m.group(0) + WORD_JOINER, escaped)
    escaped = _LINE_START.sub(_escape_line_start, escaped)
    if keep_newlines:
        escaped = escaped.replace("\n", "  \n")  # a hard line break, as the text had
    return escaped


def _escape_line_start(m: re.Match[str]) -> str:
    indent, marker, digits, dot = m.groups()
    return f"{indent}\\{marker}" if marker else f"{indent}{digits}\\{dot}"


def code(text: object, limit: int = SHOW_MAX) -> str:
    """An inline Markdown code span showing ``text`` literally (e.g. a file name)."""
    shown = visible(text, limit)
    longest = run = 0
    for c in shown:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    if shown[:1] in ("`", " ") or shown[-1:] in ("`", " "):
        return f"{fence} {shown} {fence}"  # CommonMark strips one space each side
    return f"{fence}{shown}{fence}"


def plotly_text(text: object, limit: int = SHOW_MAX) -> str:
    """``text`` for a Plotly label (legend, axis tick, title, hover text) shown literally.

    Plotly reads a small HTML subset in every label (``<a href>`` becomes a live link,
    ``<b>``, ``<span style>``...) and decodes entities, so ``<``, ``>`` and ``&`` are
    written as entities; hidden characters are made visible as by :func:`visible`.
    """
    return html.escape(visible(text, limit), quote=False)


def check_name(text: object, what: str, limit: int = NAME_MAX) -> str:
    """Validate a name typed by a person (annotator, project, class).

    Args:
        text: The proposed name.
        what: What it names, for the message (``"annotator name"``).
        limit: Longest accepted length in characters.

    Returns:
        The name with surrounding whitespace removed.

    Raises:
        ValueError: If it is blank, longer than ``limit``, or holds control, bidi-override
            or zero-width characters; the message says which and how long it is.
    """
    name = str(text).strip()
    if not name:
        raise ValueError(f"the {what} is blank")
    if len(name) > limit:
        raise ValueError(f"the {what} is {len(name):,} characters long; at most {limit} are allowed")
    hidden = sorted({_escape_char(c) for c in name if _hidden(c)})
    if hidden:
        raise ValueError(f"the {what} contains invisible or control characters ({', '.join(hidden[:5])}); "
                         "type it again without them")
    return name


def short_time(iso: object) -> str:
    """An ISO 8601 time stamp as people read it: ``2026-11-29 21:40:03 UTC`` ("—" when empty).

    Microseconds are dropped; a value that is not a time stamp is returned as text, bounded.
    """
    from datetime import datetime, timezone

    if not iso:
        return "—"
    try:
        t = datetime.fromisoformat(str(iso))
    except ValueError:
        return visible(str(iso), 40)
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
        return t.strftime("%Y-%m-%d %H:%M:%S UTC")
    return t.strftime("%Y-%m-%d %H:%M:%S")
