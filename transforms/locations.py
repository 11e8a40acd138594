"""Input and output locations, checked before any work: they must not overlap, and every output
location must be writable (a probe object is written and deleted)."""

from __future__ import annotations

import os
import posixpath

from transforms.storage import filesystem, is_local

_PATTERN_CHARS = "*?[{"


def fixed_prefix(path: str) -> str:
    """The part of a path, glob or brace pattern that names a fixed folder or file."""
    cut = min((path.find(c) for c in _PATTERN_CHARS if c in path), default=-1)
    if cut == -1:
        return path.rstrip("/") or "/"
    return posixpath.dirname(path[:cut]).rstrip("/") or "/"


def location(uri: str, s3_endpoint: str = "") -> tuple[str, str]:
    """(scheme, fixed path) of a URI: local paths absolute with symlinks resolved; object-store
    paths as ``bucket/key`` prefixes."""
    fs, path = filesystem(uri, s3_endpoint)
    if is_local(fs):
        return "file", os.path.realpath(fixed_prefix(path))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return str(protocol), fixed_prefix(path).strip("/")


def _within(inner: str, outer: str) -> bool:
    """Whether path ``inner`` is ``outer`` or below it, component by component."""
    return inner == outer or outer in ("", "/") or inner.startswith(outer.rstrip("/") + "/")


def check_no_overlap(input_uri: str, output_uri: str, s3_endpoint: str = "") -> None:
    """Refuse an output inside the input, an input inside the output, or the two the same.

    Raises:
        ValueError: naming ``input`` and ``output``.
    """
    (in_scheme, in_path), (out_scheme, out_path) = location(input_uri, s3_endpoint), location(output_uri, s3_endpoint)
    if in_scheme != out_scheme:
        return
    if in_path == out_path:
        where = "are the same location"
    elif _within(out_path, in_path):
        where = "overlap: the output is inside the input (the run would read its own outputs back)"
    elif _within(in_path, out_path):
        where = "overlap: the input is inside the output (the run would write and clean up among its sources)"
    else:
        return
    raise ValueError(f"input, output: {input_uri!r} and {output_uri!r} {where}; choose an output outside the input")
