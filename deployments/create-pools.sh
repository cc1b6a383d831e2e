#!/usr/bin/env bash
# Prepare the Prefect server named by PREFECT_API_URL (pools, GPU limits, blocks; idempotent),
# then register every deployment of prefect.yaml. Extra arguments go to `deploy setup`,
# e.g. --gpu-slots 4, --gpu-pool-type process, --hf-token-from-env.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL to your Prefect server, e.g. http://127.0.0.1:4200/api}"
robocurate deploy setup "$@"
ROBOCURATE_WORKDIR=${ROBOCURATE_WORKDIR:-$PWD} prefect --no-prompt deploy --all
