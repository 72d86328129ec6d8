"""Text prompts for CLIP zero-shot classification: per-class prompts and template ensembles.

Each class gets a list of texts: every template filled with the class name, plus any
explicit per-class prompts (a per-class prompt that contains ``{}`` is filled with the
class name too). The text tower embeds every text; a class's zero-shot prototype is the
mean of its L2-normalised text embeddings, renormalised to unit length (the template
ensemble of Radford et al., 2021).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}.",)
"""The one-template default of CLIP papers."""

SIMPLE_TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in SIMPLE_IMAGENET_TEMPLATES)
"""open_clip's 7-template 'simple' ImageNet ensemble."""

OPENAI_TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
"""The 80-template ImageNet ensemble of the CLIP paper."""

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "single": SINGLE_TEMPLATE,
    "simple": SIMPLE_TEMPLATES,
    "openai": OPENAI_TEMPLATES,
}

ClassPrompts = Mapping[str, str | Sequence[str]]


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """Turn a template-set name, a list of templates, or ``None`` into a tuple of templates.

    Args:
        templates: A key of :data:`TEMPLATE_SETS`, explicit templates (each containing
            ``{}`` for the class name), or ``None`` for the ``"simple"`` set. An empty
            list means "no templates": then every class needs explicit prompts.

    Raises:
        ValueError: Unknown set name, or a template without ``{}``.
    """
    if templates is None:
        return SIMPLE_TEMPLATES
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise ValueError(f"unknown template set {templates!r}; choose one of {sorted(TEMPLATE_SETS)} or pass a list")
        return TEMPLATE_SETS[templates]
    out = tuple(str(t) for t in templates)
    for t in out:
        if "{}" not in t:
            raise ValueError(f"template {t!r} has no '{{}}' placeholder for the class name")
    return out


def build_class_texts(
    classes: Sequence[str],
    class_prompts: ClassPrompts | None = None,
    templates: str | Sequence[str] | None = None,
) -> list[list[str]]:
    """The texts whose embeddings are averaged into each class prototype.

    Args:
        classes: Class names in column order.
        class_prompts: Optional extra prompts per class name (a string or a list).
        templates: Template set (see :func:`resolve_templates`).

    Returns:
        One list of texts per class, duplicates removed, order kept.

    Raises:
        ValueError: A prompt names an unknown class, or a class ends up with no text.
    """
    tpl = resolve_templates(templates)
    class_prompts = dict(class_prompts or {})
    unknown = sorted(set(class_prompts) - set(classes))
    if unknown:
        raise ValueError(f"prompts given for unknown classes {unknown[:5]}; classes are {list(classes)[:10]}")
    texts: list[list[str]] = []
    for name in classes:
        extra = class_prompts.get(name, ())
        if isinstance(extra, str):
            extra = (extra,)
        items = [t.format(name) for t in tpl] + [p.format(name) if "{}" in p else p for p in extra]
        items = list(dict.fromkeys(s.strip() for s in items if s and s.strip()))
        if not items:
            raise ValueError(f"class {name!r} has no prompt: give templates or a per-class prompt")
        texts.append(items)
    return texts


def prompts_key(class_texts: Sequence[Sequence[str]]) -> str:
    """A short stable hash of the per-class texts (cache key for text embeddings)."""
    return hashlib.sha256(json.dumps([list(t) for t in class_texts]).encode()).hexdigest()[:16]
