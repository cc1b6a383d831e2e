#!/usr/bin/env bash
# Create robocurate's work pools on the Prefect server named by PREFECT_API_URL,
# then register every deployment of prefect.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL to your Prefect server, e.g. http://127.0.0.1:4200/api}"
prefect work-pool inspect robocurate-cpu >/dev/null 2>&1 \
  || prefect work-pool create robocurate-cpu --type process
ROBOCURATE_WORKDIR=${ROBOCURATE_WORKDIR:-$PWD} prefect --no-prompt deploy --all
