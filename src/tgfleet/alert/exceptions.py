"""The alerting domain's errors."""

from __future__ import annotations

from collections.abc import Sequence

from tgfleet.exceptions import ConfigError

__all__ = ["AlertingConfigError"]


class AlertingConfigError(ConfigError):
    """The alerting configuration is invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid alerting configuration:\n" + "\n".join(self.problems))
