"""transforms/failpoints.py: a failpoint kills the process on its n-th hit, and only then."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(setting: str, hits: int) -> subprocess.CompletedProcess[str]:
    code = ("import sys\nfrom transforms.failpoints import failpoint\n"
            f"for i in range({hits}):\n    failpoint('point')\n    print(i, flush=True)\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if setting:
        env["ANONYMIZE_FAILPOINT"] = setting
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_unset_or_another_point_never_kills() -> None:
    for setting in ("", "other:1"):
        done = _run(setting, 3)
        assert done.returncode == 0 and done.stdout.split() == ["0", "1", "2"], (setting, done)


def test_kills_with_sigkill_on_the_nth_hit() -> None:
    done = _run("point:3", 5)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1"]  # two hits survived, the third killed before its print
    first = _run("point", 2)  # no count: the first hit
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
