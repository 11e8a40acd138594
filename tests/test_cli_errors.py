"""pipelines/cli.py: bad input to any command is exit status 2 with one line naming the command
and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from transforms.lease import OutputLease
from transforms.storage import DEFAULT_STORAGE


def test_bad_input_is_one_line_and_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["run", "--conf", str(tmp_path / "nope.yaml")], "anonymize: config error: conf: file not found"),
        (["erase", str(tmp_path / "out"), "--from-file", str(tmp_path / "none.txt")], "anonymize: erase: "),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(expected) and "Traceback" not in err, err
    with OutputLease(str(tmp_path / "out"), DEFAULT_STORAGE, "live-run", 60):
        assert main(["purge", str(tmp_path / "out"), "--older-than", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anonymize: purge: ") and "live-run" in err, err
