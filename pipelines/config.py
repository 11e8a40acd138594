"""YAML job configs to typed pipeline options.

Files merge left to right, ``--set key=value`` overrides win, and the result becomes the flags
of ``AnonymizeOptions`` plus any Beam flag (runner, workers, ...). Unknown keys and mistyped
values fail here, before any work, with a message that names the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import SPECS_BY_NAME, AnonymizeOptions, validate
from pipelines.runners import check_runner_storage

# Settings whose URIs the workers open themselves (not only the launcher).
WORKER_READ_URIS = ("input", "output", "synthetic_generator", "reference_weights")


class ConfigError(ValueError):
    """A job config that cannot be turned into options; the message names the field."""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{key!r}: keys must be strings")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}_"))
        else:
            flat[name] = value
    return flat


def load_yaml(uri: str) -> dict[str, Any]:
    """Read one YAML config file (local path or fsspec URL) into a flat mapping."""
    try:
        with fsspec.open(uri, "r") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"conf: file not found: {uri}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"conf: {uri} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"conf: {uri} must hold a mapping of settings")
    return _flatten(data)


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` overrides; values are read as YAML scalars."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected key=value, got {pair!r}")
        result[key.strip()] = yaml.safe_load(raw) if raw else ""
    return result


def _beam_option_names() -> set[str]:
    return set(PipelineOptions([]).get_all_options(retain_unknown_options=False).keys())


def unknown_flags(argv: Iterable[str]) -> list[str]:
    """The flags of ``argv`` that neither this job's options nor any Beam option class declares
    (Beam itself only warns about them and drops them)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(argv))
    return [arg.split("=", 1)[0] for arg in unknown if arg.startswith("--") and len(arg) > 2]


# Options written as comma-separated numbers: YAML may also give a list of numbers, or one number.
COMMA_LISTS = frozenset({"detector_thresholds", "solid_color", "centerface_rotations", "retinaface_scales"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_type(key: str, value: Any) -> Any:
    spec = SPECS_BY_NAME[key]
    if value is None:
        return None
    if spec.type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if spec.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if key in COMMA_LISTS:
        if isinstance(value, list) and all(_is_number(v) for v in value):
            return ",".join(str(v) for v in value)
        if _is_number(value):  # `retinaface_scales: 1`, `centerface_rotations: 180`
            return str(value)
    if isinstance(value, list) and key in ("exclude_source_uris", "exclude_subject_ids"):
        return "\n".join(str(v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{key}: must be one of {', '.join(spec.choices)}; got {value!r}")
    return value


def settings_to_argv(settings: Mapping[str, Any]) -> list[str]:
    """Turn a flat mapping of settings into pipeline flags, refusing unknown keys."""
    beam_names = _beam_option_names()
    argv: list[str] = []
    for key, value in settings.items():
        if key in SPECS_BY_NAME:
            value = _check_type(key, value)
        elif key not in beam_names:
            raise ConfigError(f"{key}: unknown setting")
        if value is None:
            continue
        if isinstance(value, bool):
            spec = SPECS_BY_NAME.get(key)
            if spec is not None:
                argv.append(f"--{key}={'true' if value else 'false'}")
            elif value:
                argv.append(f"--{key}")
            continue
        if isinstance(value, list):
            for item in value:
                argv.append(f"--{key}={item}")
            continue
        argv.append(f"--{key}={value}")
    return argv


def build_options(conf_uris: Iterable[str], overrides: Iterable[str] = (),
                  extra_argv: Iterable[str] = ()) -> tuple[AnonymizeOptions, dict[str, Any]]:
    """Merge configs and overrides into validated options.

    Returns:
        The options and the merged settings (for the config hash and the run record).

    Raises:
        ConfigError: naming the field that is unknown, mistyped, missing or out of range.
    """
    merged: dict[str, Any] = {}
    for uri in conf_uris:
        merged.update(load_yaml(uri))
    merged.update(parse_overrides(overrides))
    argv = settings_to_argv(merged) + list(extra_argv)
    unknown = unknown_flags(argv)
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: unknown flag (neither a setting of this job nor a Beam option; "
                          "check its spelling)")
    options = AnonymizeOptions(argv)
    try:
        validate(options)
        check_runner_storage(options, {name: getattr(options, name) for name in WORKER_READ_URIS})
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return options, merged


def job_settings(options: AnonymizeOptions) -> dict[str, Any]:
    """The job's own settings (not runner flags): what decides the output bytes."""
    return {name: getattr(options, name) for name in sorted(SPECS_BY_NAME)}


def config_sha256(options: AnonymizeOptions) -> str:
    """A hash of the settings that decide the output, recorded with every manifest row."""
    settings = job_settings(options)
    for runtime_only in ("s3_endpoint", "torch_threads", "detector_share_across_processes", "lease_seconds"):
        settings.pop(runtime_only, None)  # where and how fast, not what: same hash on every runner
    encoded = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()
