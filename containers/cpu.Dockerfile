# robocurate CPU image: every CPU flow, from a process or docker work pool.
#   docker build -f containers/cpu.Dockerfile -t ghcr.io/robocurate/robocurate-cpu:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY constraints ./constraints
COPY robocurate ./robocurate
COPY flows ./flows
COPY tasks ./tasks
# CPU torch from PyTorch's CPU index: the default wheel drags in ~3 GB of CUDA libraries.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints/cpu.txt \
      --extra-index-url https://download.pytorch.org/whl/cpu ".[owa]"

FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 1000 robocurate
COPY --from=build /opt/venv /opt/venv
COPY prefect.yaml /opt/robocurate/prefect.yaml
COPY flows /opt/robocurate/flows
ENV PATH=/opt/venv/bin:$PATH \
    ROBOCURATE_WORKDIR=/opt/robocurate \
    PREFECT_HOME=/home/robocurate/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90
USER 1000
# Migrate the embedded API's database now, not at every container start (ad-hoc CLI runs).
RUN prefect server database upgrade -y
WORKDIR /opt/robocurate
ENTRYPOINT ["robocurate"]
CMD ["--help"]
