"""A process that loaded the stages ends without collecting their object graphs (transforms/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_objects_are_frozen_before_the_interpreters_teardown() -> None:
    # Registered before ``transforms`` is imported, this handler runs after transforms' own (LIFO).
    script = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count()))\n"
        "import transforms.records\n"
        "print('frozen before exit:', gc.get_freeze_count())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = dict(line.split(": ") for line in done.stdout.splitlines())
    assert int(lines["frozen before exit"]) == 0
    assert int(lines["frozen at exit"]) > 1000
