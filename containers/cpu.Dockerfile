# robocurate CPU image: runs every CPU flow from a process or docker work pool.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY constraints ./constraints
COPY robocurate ./robocurate
COPY flows ./flows
COPY tasks ./tasks
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints/cpu.txt \
      --extra-index-url https://download.pytorch.org/whl/cpu .

FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 1000 robocurate
COPY --from=build /opt/venv /opt/venv
COPY prefect.yaml /opt/robocurate/prefect.yaml
COPY flows /opt/robocurate/flows
ENV PATH=/opt/venv/bin:$PATH \
    ROBOCURATE_WORKDIR=/opt/robocurate \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90
USER robocurate
WORKDIR /opt/robocurate
ENTRYPOINT ["robocurate"]
CMD ["--help"]
