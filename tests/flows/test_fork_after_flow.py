"""A process forked after a flow ran exits cleanly (Prefect 3.8 left its workers' exit
drains registered in forked children, which then ended with exit code 1)."""

import multiprocessing

import pytest

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


def _nothing() -> None:
    pass


def test_forked_child_exits_zero_after_a_flow_logged_to_the_api():
    from prefect import flow, get_run_logger

    import flows.runners  # noqa: F401  (registers the at-fork clean-up)

    @flow
    def says_hello() -> int:
        get_run_logger().info("hello")  # starts the API log worker
        return 1

    assert says_hello() == 1
    child = multiprocessing.get_context("fork").Process(target=_nothing)
    child.start()
    child.join(30)
    assert child.exitcode == 0
