# Posefleet gateway image: the REST API and V2 gRPC, and with
# `python -m services.cli control-worker` as its command the RQ control-plane worker. No models,
# no accelerator. Build context: the repository root; the image contract: docs/images.md.
#   make images        # with every worker image, offline (tools/containers/images.py)
#   docker build -f images/gateway.Dockerfile --target cpu -t posefleet/gateway:0.1.0-cpu .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG VERSION=0.1.0

# The layers up to the project install are the worker recipe's cpu target's, instruction for
# instruction, so a build of every image installs the dependencies once.
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp TMPDIR=/tmp \
    POSEFLEET_CACHE_DIR=/tmp/posefleet POSEFLEET_PIPELINES_FILE=/app/pipelines.yaml
WORKDIR /app
COPY pyproject.toml ./
RUN mkdir services && touch README.md && pip install --no-cache-dir . \
    && pip uninstall -y posefleet && rm -rf services README.md build *.egg-info
COPY README.md pipelines.yaml ./
COPY services ./services
RUN pip install --no-cache-dir --no-deps . && rm -rf services README.md build *.egg-info
ARG VERSION
LABEL org.opencontainers.image.title="posefleet-gateway" \
      org.opencontainers.image.description="Posefleet gateway (job API) and control worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV HOST=0.0.0.0 PORT=8080 GRPC_PORT=8081
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT []
CMD ["python", "-m", "services.gateway"]
