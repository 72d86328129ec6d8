"""How long the next training round will take, before it starts.

A round's steps follow :func:`activekd_core.training.derive_steps` (``200 * ceil(L /
64)`` by default, so they grow with the labels). Its time is ``steps * seconds per
step``; the seconds per step come from a stored rate for the same backbone, input size,
device and loss (rounds record it when they finish), or from a short measurement
(:func:`activekd_core.training.measure_step_seconds`) when nothing is stored yet.

Rates are kept in a plain ``dict`` (the project stores it as a setting) keyed by
:func:`rate_key`; this module only reads and updates that dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RoundEstimate:
    """The next round's size and expected duration.

    Attributes:
        steps: Steps the round will run (after the user's cap).
        steps_uncapped: Steps the rule asks for before the cap.
        rule: ``"reference"``, ``"pool"`` or ``"fixed"`` (an explicit step count).
        n_labeled: Labeled images the round trains on.
        seconds_per_step: Expected seconds per step, or None when unknown.
        seconds: Expected training time (steps x seconds per step), or None.
        source: Where the rate comes from (``"previous rounds"``, ``"measured"``, ``"unknown"``).
        key: The rate key (backbone, size, device, loss).
    """

    steps: int
    steps_uncapped: int
    rule: str
    n_labeled: int
    seconds_per_step: float | None
    seconds: float | None
    source: str
    key: str

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-friendly)."""
        return asdict(self)


def rate_key(config: Any, device: str) -> str:
    """Key of a step-time rate: backbone, input size, device type and loss, e.g. ``resnet18@224/cuda/kd``."""
    return f"{config.arch}@{int(config.image_size)}/{device}/{'kd' if config.kd else 'ce'}"


def record_rate(rates: dict[str, Any], key: str, seconds: float, steps: int, source: str) -> dict[str, Any]:
    """A copy of ``rates`` with the rate of ``key`` set from a run of ``steps`` steps in ``seconds``."""
    out = dict(rates or {})
    if steps > 0 and seconds > 0:
        out[key] = {"seconds_per_step": float(seconds) / int(steps), "source": source}
    return out


def estimate_round(config: Any, n_labeled: int, n_pool: int, device: str, rates: dict[str, Any] | None) -> RoundEstimate:
    """The next round's steps and, when a rate for its key is known, its duration.

    Args:
        config: The round's :class:`activekd_core.training.TrainConfig`.
        n_labeled: Labeled images it will train on.
        n_pool: Images in the pool.
        device: Device type the round will run on (``"cuda"``, ``"cpu"``, ``"mps"``).
        rates: Stored rates (see :func:`record_rate`).
    """
    from activekd_core.training import derive_steps, uncapped_steps

    steps = derive_steps(config, max(1, n_labeled), n_pool)
    raw = uncapped_steps(config, max(1, n_labeled), n_pool)
    key = rate_key(config, device)
    entry = (rates or {}).get(key)
    sps = float(entry["seconds_per_step"]) if isinstance(entry, dict) and entry.get("seconds_per_step") else None
    rule = "fixed" if config.steps is not None else str(config.step_rule)
    return RoundEstimate(
        steps=steps,
        steps_uncapped=raw,
        rule=rule,
        n_labeled=int(n_labeled),
        seconds_per_step=sps,
        seconds=None if sps is None else sps * steps,
        source=str(entry.get("source", "previous rounds")) if sps is not None else "unknown",
        key=key,
    )
