# Posefleet worker image: one recipe for every stage service, chosen by build args. Build
# context: the repository root; the image contract and every build arg: docs/images.md.
#   make images        # the cpu image of every service, offline (tools/containers/images.py)
#   docker build -f images/worker.Dockerfile --target cpu \
#     --build-arg SERVICE=pose --build-arg STAGE=pose \
#     --build-arg MODELS_IMAGE=posefleet/models-pose:0.1.0 -t posefleet/pose:0.1.0-cpu .
# Targets: cpu, gpu (CUDA), neuron (AWS Inferentia/Trainium).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# onnxruntime-gpu 1.31 from PyPI links CUDA 13 (libcudart.so.13, libcublas.so.13) and cuDNN 9,
# so GPU nodes need an NVIDIA driver >= 580.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
# AWS's Neuron DLC: Python 3.11, torch 2.8, torch-neuronx and neuronx-cc from AWS's pip index,
# the Neuron runtime library from AWS's apt repository.
ARG NEURON_IMAGE=public.ecr.aws/neuron/pytorch-inference-neuronx:2.8.0-neuronx-py311-sdk2.26.1-ubuntu22.04
# The models this image serves, from a models-only image (images/models.Dockerfile): /models
# and nothing else. No default: which models go in is the builder's choice (make images picks
# every catalog model of the tasks the service's stages serve).
ARG MODELS_IMAGE
ARG VERSION=0.1.0

FROM ${MODELS_IMAGE} AS models

# cpu: onnxruntime's CPU provider. The layers up to the project install are the gateway's too
# (images/gateway.Dockerfile), so every image of a build shares one dependency install.
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp TMPDIR=/tmp \
    POSEFLEET_CACHE_DIR=/tmp/posefleet POSEFLEET_PIPELINES_FILE=/app/pipelines.yaml
WORKDIR /app
# Dependencies from pyproject.toml alone (an empty package), so a code change reinstalls only
# the project, not NumPy, OpenCV and onnxruntime.
COPY pyproject.toml ./
RUN mkdir services && touch README.md && pip install --no-cache-dir . \
    && pip uninstall -y posefleet && rm -rf services README.md build *.egg-info
COPY README.md pipelines.yaml ./
COPY services ./services
RUN pip install --no-cache-dir --no-deps . && rm -rf services README.md build *.egg-info
COPY --from=models /models /models
ARG SERVICE
ARG STAGE
ARG VERSION
RUN test -n "${SERVICE}" && test -n "${STAGE}" \
    || { echo "build args SERVICE and STAGE are required" >&2; exit 1; }
LABEL org.opencontainers.image.title="posefleet-${SERVICE}" \
      org.opencontainers.image.description="Posefleet ${SERVICE} worker, onnxruntime CPU" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \
      org.opencontainers.image.licenses="Apache-2.0"
# POSEFLEET_STAGE is the stage `worker` runs when the command names none.
ENV POSEFLEET_MODEL_ROOT=/models POSEFLEET_STAGE=${STAGE}
USER 10001:10001
EXPOSE 9100
ENTRYPOINT []
CMD ["python", "-m", "services.cli", "worker"]

# gpu: onnxruntime-gpu (CUDA provider) on NVIDIA's CUDA + cuDNN runtime, with Ubuntu 24.04's
# Python 3.12 (the CUDA images carry no 3.11). ENTRYPOINT [] drops NVIDIA's banner script, so
# the logs stay JSON lines.
FROM ${CUDA_IMAGE} AS gpu
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp TMPDIR=/tmp \
    POSEFLEET_CACHE_DIR=/tmp/posefleet POSEFLEET_PIPELINES_FILE=/app/pipelines.yaml \
    POSEFLEET_PROVIDER=cuda
WORKDIR /app
COPY pyproject.toml ./
# onnxruntime (a dependency) and onnxruntime-gpu (the `gpu` extra) install the same module:
# remove both, then put back only the GPU build at the version the extra resolved to.
RUN mkdir services && touch README.md && pip install --no-cache-dir ".[gpu]" \
    && ort_gpu="$(pip list --format=freeze | grep -i '^onnxruntime[-_]gpu==')" \
    && pip uninstall -y onnxruntime onnxruntime-gpu posefleet \
    && pip install --no-cache-dir --no-deps "${ort_gpu}" \
    && rm -rf services README.md build *.egg-info
COPY README.md pipelines.yaml ./
COPY services ./services
RUN pip install --no-cache-dir --no-deps . && rm -rf services README.md build *.egg-info
COPY --from=models /models /models
ARG SERVICE
ARG STAGE
ARG VERSION
RUN test -n "${SERVICE}" && test -n "${STAGE}" \
    || { echo "build args SERVICE and STAGE are required" >&2; exit 1; }
LABEL org.opencontainers.image.title="posefleet-${SERVICE}" \
      org.opencontainers.image.description="Posefleet ${SERVICE} worker, onnxruntime-gpu CUDA" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV POSEFLEET_MODEL_ROOT=/models POSEFLEET_STAGE=${STAGE}
USER 10001:10001
EXPOSE 9100
ENTRYPOINT []
CMD ["python", "-m", "services.cli", "worker"]

# neuron: AWS Inferentia2/Trainium (POSEFLEET_BACKEND=neuron) on AWS's Neuron image. Its SDK
# packages (torch*, neuronx*) are held at the base image's versions while Posefleet installs;
# naming torch-neuronx and neuronx-cc makes pip fail loudly if our pins contradict theirs. The
# base's opencv-python would share the cv2 module with our opencv-python-headless: it goes.
FROM ${NEURON_IMAGE} AS neuron
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp TMPDIR=/tmp \
    POSEFLEET_CACHE_DIR=/tmp/posefleet POSEFLEET_PIPELINES_FILE=/app/pipelines.yaml \
    POSEFLEET_BACKEND=neuron
WORKDIR /app
COPY pyproject.toml ./
RUN mkdir services && touch README.md && pip uninstall -y opencv-python \
    && pip list --format=freeze | grep -iE '^(torch|neuronx|libneuronxla)' > /tmp/neuron-sdk.txt \
    && pip install --no-cache-dir --extra-index-url https://pip.repos.neuron.amazonaws.com \
        -c /tmp/neuron-sdk.txt ".[neuron]" torch-neuronx neuronx-cc \
    && pip uninstall -y posefleet && rm -rf services README.md build *.egg-info /tmp/neuron-sdk.txt
COPY README.md pipelines.yaml ./
COPY services ./services
RUN pip install --no-cache-dir --no-deps . && rm -rf services README.md build *.egg-info
COPY --from=models /models /models
ARG SERVICE
ARG STAGE
ARG VERSION
RUN test -n "${SERVICE}" && test -n "${STAGE}" \
    || { echo "build args SERVICE and STAGE are required" >&2; exit 1; }
LABEL org.opencontainers.image.title="posefleet-${SERVICE}" \
      org.opencontainers.image.description="Posefleet ${SERVICE} worker, AWS Neuron" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV POSEFLEET_MODEL_ROOT=/models POSEFLEET_STAGE=${STAGE}
USER 10001:10001
EXPOSE 9100
# The base image's entrypoint starts TorchServe and its HEALTHCHECK polls TorchServe's port.
HEALTHCHECK NONE
ENTRYPOINT []
CMD ["python", "-m", "services.cli", "worker"]
