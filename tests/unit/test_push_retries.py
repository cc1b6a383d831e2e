"""Which failures a push retries, without a server."""

import httpx2
import pytest

from robocurate.hub import push


def test_connection_errors_are_retried_with_growing_delays():
    calls, delays = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise httpx2.ConnectError("connection refused")
        return "done"

    assert push._with_retries(flaky, base=1.0, sleep=delays.append) == "done"
    assert len(calls) == 3 and 1.0 <= delays[0] < delays[1]


def test_other_errors_are_not_retried_and_retries_end():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        push._with_retries(broken, sleep=lambda d: None)
    assert len(calls) == 1

    def down():
        raise httpx2.ConnectError("down")

    with pytest.raises(push.PushError, match="giving up after 3 attempts"):
        push._with_retries(down, attempts=3, sleep=lambda d: None)
