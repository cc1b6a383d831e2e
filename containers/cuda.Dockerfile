# robocurate CUDA image: the GPU steps (React contact indexing, DROID stereo depth) on the
# robocurate-gpu docker pool (deployments/gpu-job-template.json names this image).
#   docker build -f containers/cuda.Dockerfile -t ghcr.io/robocurate/robocurate-cuda:0.1.0 .
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.* python3.12-venv=3.12.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY robocurate ./robocurate
COPY flows ./flows
COPY tasks ./tasks
# A CUDA 12.6 build of torch, then robocurate (no CPU constraint here).
RUN python3.12 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu126 \
      torch==2.13.0 \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1001 robocurate
COPY --from=build /opt/venv /opt/venv
COPY prefect.yaml /opt/robocurate/prefect.yaml
COPY flows /opt/robocurate/flows
ENV PATH=/opt/venv/bin:$PATH \
    ROBOCURATE_WORKDIR=/opt/robocurate \
    PREFECT_HOME=/home/robocurate/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video
USER 1001
RUN prefect server database upgrade -y
WORKDIR /opt/robocurate
ENTRYPOINT ["robocurate"]
CMD ["--help"]
