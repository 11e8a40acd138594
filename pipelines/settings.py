"""Validated options turned into the typed values the stages take, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transforms.storage import Storage

if TYPE_CHECKING:
    from pipelines.options import AnonymizeOptions


def storage_for(options: AnonymizeOptions) -> Storage:
    """The run's storage: how every stage reaches the input, the output and model files."""
    return Storage(endpoint=options.s3_endpoint)
