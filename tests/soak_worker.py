"""``anonymize run`` with the fixed-box test detector, for the soak test's killed subprocesses:
``python -m tests.soak_worker run --conf ...``. Each image gets one face box of score 0.8:
replaced (>= 0.7) and, re-found on the output, below the verification threshold (0.9)."""

from __future__ import annotations

import sys
from typing import Any

from pipelines import cli
from tests.fakes import FixedBoxesFactory
from transforms.detection import DetectorStack

BOX = (4.0, 4.0, 28.0, 28.0, 0.8)


def fixed_boxes(options: Any) -> DetectorStack:
    return DetectorStack.of(FixedBoxesFactory([BOX]))


if __name__ == "__main__":
    cli.detector_stack_for = fixed_boxes  # type: ignore[assignment]
    sys.exit(cli.main(sys.argv[1:]))
