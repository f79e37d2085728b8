"""`Watch`: samples of this process's default Prometheus registry read now, to compare with
later. Counters are process-wide: a test reads what it cares about before acting and asserts
what it added."""

from __future__ import annotations

from prometheus_client import REGISTRY

Series = tuple[str, dict[str, str]]


def value(series: Series) -> float:
    """The sample's current value (0 when the series does not exist yet)."""
    name, labels = series
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Watch:
    """Samples of the default registry read now, to be compared with later."""

    def __init__(self, **series: Series) -> None:
        self._series = series
        self._start = {key: value(spec) for key, spec in series.items()}

    def delta(self) -> dict[str, float]:
        """How much each watched sample grew since the watch began."""
        return {key: value(spec) - self._start[key] for key, spec in self._series.items()}


def outcome_of(name: str, outcome: str) -> Series:
    return (name, {"outcome": outcome})


def plain(name: str) -> Series:
    return (name, {})
