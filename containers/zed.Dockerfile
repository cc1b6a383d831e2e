# robocurate ZED image: DROID intrinsics and depth from the ZED SDK (pyzed), for
# `robocurate droid tracks --intrinsics-source zed --depth-source zed`.
#   docker build -f containers/zed.Dockerfile -t ghcr.io/robocurate/robocurate-zed:0.1.0 .
# The SDK image ships Python 3.10 and the SDK; pyzed comes from the SDK's own installer.
# torch wheels carry their own CUDA 12.6 runtime (needs an NVIDIA driver >= 560).
FROM stereolabs/zed:4.2-runtime-cuda12.1-ubuntu22.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv=3.10.* python3-pip=22.* \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv --system-site-packages /opt/venv \
 && /opt/venv/bin/python /usr/local/zed/get_python_api.py \
 && useradd --create-home --uid 1001 robocurate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY robocurate ./robocurate
COPY flows ./flows
COPY tasks ./tasks
RUN /opt/venv/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cu126 \
      torch==2.13.0 . \
 && /opt/venv/bin/python -c "import pyzed.sl"
COPY prefect.yaml /opt/robocurate/prefect.yaml
COPY flows /opt/robocurate/flows
ENV PATH=/opt/venv/bin:$PATH \
    ROBOCURATE_WORKDIR=/opt/robocurate \
    PREFECT_HOME=/home/robocurate/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
USER 1001
RUN prefect server database upgrade -y
WORKDIR /opt/robocurate
ENTRYPOINT ["robocurate"]
CMD ["--help"]
