"""Contract types of our own for import-linter (``[tool.importlinter]`` in pyproject.toml).

The built-in types take lists of modules; these take *patterns*, so a rule written once holds
for every domain, including one added next year, without editing a list:

- ``private_to_package``: a module whose name matches (``repository``, ``*_repository``) inside
  any package the ``containers`` expression matches is imported directly only from inside that
  package. "A domain calls another domain's service, never its repository."
- ``package_layers``: inside every container, modules named for a layer (``endpoints``,
  ``service``, ``repository``) import only the next layer down: endpoints reach the repository
  through the service, and nothing calls upwards.
- ``only_imports``: the source packages import nothing of the root package but what
  ``allowed_modules`` lists (an allow-list, so a new domain is forbidden by default). The
  sandbox is a separate program sharing only the kit.

``tests/test_import_contracts.py`` checks that each contract breaks on a deliberately bad
import in a throw-away package laid out like ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch

import grimp
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.helpers import module_expressions_to_modules
from importlinter.domain.imports import ModuleExpression


@dataclass(frozen=True, order=True)
class Violation:
    importer: str
    imported: str
    lines: tuple[int, ...]
    rule: str


def _violation(graph: grimp.ImportGraph, importer: str, imported: str, rule: str) -> Violation:
    details = graph.get_import_details(importer=importer, imported=imported)
    return Violation(importer, imported, tuple(d["line_number"] for d in details), rule)


def _tail(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def _matches(module: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch(_tail(module), pattern) for pattern in patterns)


def _package(graph: grimp.ImportGraph, module: str) -> set[str]:
    return {module} | graph.find_descendants(module)


def _expand(graph: grimp.ImportGraph, expressions: object) -> set[str]:
    typed: list[ModuleExpression] = list(expressions)  # type: ignore[call-overload]
    return {module.name for module in module_expressions_to_modules(graph, typed)}


def _strings(value: object) -> list[str]:
    return [str(item) for item in value]  # type: ignore[attr-defined]


def _render(check: ContractCheck, guidance: object) -> None:
    violations: list[Violation] = check.metadata["violations"]
    for violation in violations:
        lines = ", ".join(map(str, violation.lines))
        output.print_error(
            f"- {violation.importer} -> {violation.imported} (l.{lines}): {violation.rule}",
            bold=False,
        )
        output.new_line()
    if guidance:
        output.print_error(str(guidance), bold=False)
        output.new_line()


class PrivateToPackageContract(Contract):
    """Modules named like ``private`` inside each container are imported only from inside it.

    Options: ``containers`` (module expressions, e.g. ``tgfleet.*``), ``exclude_containers``
    (packages whose matching modules are shared on purpose, e.g. the kit's repository base),
    ``private`` (name patterns matched against a module's last segment).
    """

    type_name = "private_to_package"

    containers = fields.ListField(subfield=fields.ModuleExpressionField())
    exclude_containers = fields.ListField(subfield=fields.ModuleExpressionField(), required=False)
    private = fields.ListField(subfield=fields.StringField())
    broken_contract_guidance = fields.TextField(required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:  # noqa: ARG002
        excluded = _expand(graph, self.exclude_containers or [])
        patterns = _strings(self.private)
        violations: set[Violation] = set()
        for container in sorted(_expand(graph, self.containers) - excluded):
            inside = _package(graph, container)
            for module in sorted(m for m in inside if _matches(m, patterns)):
                protected = _package(graph, module)
                importers = graph.find_modules_that_directly_import(module, as_package=True)
                for importer in importers - inside:
                    for imported in graph.find_modules_directly_imported_by(importer) & protected:
                        rule = f"{imported} is private to {container}"
                        violations.add(_violation(graph, importer, imported, rule))
        return ContractCheck(kept=not violations, metadata={"violations": sorted(violations)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        _render(check, self.broken_contract_guidance)


class PackageLayersContract(Contract):
    """Inside each container, a module of layer *i* imports layered modules of layer *i+1*
    only: no upward import, no skipped layer. Modules matching no layer are not constrained.

    Options: ``containers`` (module expressions), ``layers`` (from the top; each a name
    pattern or several separated by ``|``).
    """

    type_name = "package_layers"

    containers = fields.ListField(subfield=fields.ModuleExpressionField())
    layers = fields.ListField(subfield=fields.StringField())
    broken_contract_guidance = fields.TextField(required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:  # noqa: ARG002
        layers = [[p.strip() for p in layer.split("|")] for layer in _strings(self.layers)]
        violations: set[Violation] = set()
        for container in sorted(_expand(graph, self.containers)):
            inside = _package(graph, container)

            def level(module: str, layers: list[list[str]] = layers) -> int | None:
                found = [i for i, patterns in enumerate(layers) if _matches(module, patterns)]
                return found[0] if found else None

            for importer in sorted(inside):
                mine = level(importer)
                if mine is None:
                    continue
                for imported in graph.find_modules_directly_imported_by(importer) & inside:
                    theirs = level(imported)
                    if theirs is None or theirs == mine + 1 or theirs == mine:
                        continue
                    direction = "upwards" if theirs < mine else "skipping a layer"
                    rule = (
                        f"layer {layers[mine][0]} imports layer {layers[theirs][0]} ({direction})"
                    )
                    violations.add(_violation(graph, importer, imported, rule))
        return ContractCheck(kept=not violations, metadata={"violations": sorted(violations)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        _render(check, self.broken_contract_guidance)


class OnlyImportsContract(Contract):
    """The source packages import, of the root package, only themselves and ``allowed_modules``.

    Options: ``source_modules`` and ``allowed_modules`` (module expressions, as packages).
    """

    type_name = "only_imports"

    source_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    allowed_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    broken_contract_guidance = fields.TextField(required=False)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:  # noqa: ARG002
        allowed: set[str] = set()
        for module in _expand(graph, self.allowed_modules):
            allowed |= _package(graph, module)
        violations: set[Violation] = set()
        for source in sorted(_expand(graph, self.source_modules)):
            inside = _package(graph, source)
            for importer in sorted(inside):
                for imported in graph.find_modules_directly_imported_by(importer):
                    if imported in inside or imported in allowed:
                        continue
                    rule = f"{source} may import only itself and the allowed modules"
                    violations.add(_violation(graph, importer, imported, rule))
        return ContractCheck(kept=not violations, metadata={"violations": sorted(violations)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        _render(check, self.broken_contract_guidance)
