# A models-only image (KServe calls it a "modelcar"): a model repository at /models and nothing
# else, for a worker image to copy (images/worker.Dockerfile, build arg MODELS_IMAGE) or a
# registry to carry. Build context: a model repository folder holding only the models to ship,
# <model>/<version>/{model.onnx,model.yaml} — make images stages one per service from the host's
# repository (`posefleet models build`), so no model is built inside an image.
#   docker build -f images/models.Dockerfile -t posefleet/models-pose:0.1.0 STAGED_FOLDER
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="posefleet-models" \
      org.opencontainers.image.description="Posefleet model repository (ONNX), for the worker images" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/posefleet/posefleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY . /models/
