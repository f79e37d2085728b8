"""Run every benchmark module in bench/ and append its results to docs/benchmarks.md.

Each benchmark module (any ``bench/*.py`` but this runner and ``_*.py``) exposes
``main() -> str`` returning a Markdown section: what was measured, the numbers, the
baseline it was compared against in the same run, and the ratio.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cores = len(__import__("os").sched_getaffinity(0))
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def main() -> int:
    from tgfleet.logging import configure_logging

    configure_logging(level="WARNING")
    only = set(sys.argv[1:])
    modules = sorted(
        path
        for path in ROOT.glob("*.py")
        if path.name != "run.py"
        and not path.name.startswith("_")
        and (not only or path.stem in only)
    )
    if not modules:
        print("no benchmarks found")
        return 0
    sections = []
    for path in modules:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses and pickling look modules up there
        spec.loader.exec_module(module)
        print(f"running {path.name} ...", flush=True)
        sections.append(module.main())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(f"\n## Run of {stamp} on {machine()}\n\n" + "\n\n".join(sections) + "\n")
    print(f"results appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
