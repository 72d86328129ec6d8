"""Which keyboard key labels which class on the Label page.

Default: when every class is named by a distinct digit ("0".."9") or by a distinct number
word ("zero".."nine", any case), each class gets that digit, so the key matches the name
(classes "zero".."three" used to get 1-4, and 3 labelled "two"). Otherwise 1-9 then 0 in
display order. A project can set its own keys (one character per class, e.g. "a s d f"):
letters or digits, distinct, none of the keys the page already uses.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RESERVED_KEYS", "NUMBER_WORDS", "default_class_keys", "parse_class_keys"]

POSITIONAL = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}
# S skip, U unsure, Z undo, J/K move, F focus mode; R and C are Streamlit's own shortcuts.
RESERVED_KEYS = frozenset("sSuUzZjJkKfFrRcC")


def _digit_of(name: str) -> str | None:
    text = name.strip().casefold()
    if len(text) == 1 and text.isdigit():
        return text
    return NUMBER_WORDS.get(text)


def default_class_keys(classes: Sequence[str]) -> list[str]:
    """The default key of each class (the first ten classes get one)."""
    digits = [_digit_of(c) for c in classes]
    if digits and all(d is not None for d in digits) and len(set(digits)) == len(digits):
        return [str(d) for d in digits]
    return POSITIONAL[: len(classes)]


def parse_class_keys(text: str, classes: Sequence[str]) -> list[str]:
    """Keys typed by a person, one per class in display order, separated by spaces or commas.

    An empty text means the defaults.

    Raises:
        ValueError: Wrong count, a key longer than one character, not a letter or digit, a
            repeated key, or one the page already uses (the message says which).
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        return default_class_keys(classes)
    n = min(len(classes), 10)
    if len(parts) != n:
        raise ValueError(f"give one key per class for the first {n} classes, got {len(parts)}")
    keys = []
    for p in parts:
        if len(p) != 1 or not p.isalnum() or not p.isascii():
            raise ValueError(f"{p[:10]!r} is not a single letter or digit")
        if p in RESERVED_KEYS:
            raise ValueError(f"{p!r} is taken (S skip, U unsure, Z undo, J/K move, F focus, R/C Streamlit)")
        keys.append(p.lower())
    if len(set(keys)) != len(keys):
        raise ValueError("every class needs its own key")
    return keys
