from __future__ import annotations

from typing import ClassVar

from tgfleet.exceptions import AppError, Conflict, NotFound


class PlaybookNotFound(NotFound):
    code = "playbook_not_found"


class PlaybookVersionNotFound(NotFound):
    """A version that the playbook does not have (a pin to a version never saved)."""

    code = "playbook_version_not_found"


class PlaybookNameTaken(Conflict):
    code = "playbook_name_taken"


class PlaybookInUse(Conflict):
    code = "playbook_in_use"


class PlaybookUnchanged(Conflict):
    code = "playbook_unchanged"


class PlaybookInvalid(AppError):
    """The YAML document does not parse or does not follow the schema.

    ``problems`` holds one line per problem, each naming the YAML line and the field
    (``line 7, rules[0].reply.templates: at least one template is required``).
    """

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "playbook_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
