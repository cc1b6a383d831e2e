"""The catalogue of Prefect tasks: each wraps one domain function with orchestration
options only (content cache, retries, tags)."""
