"""Shared pieces of the LLM tests: the model (loaded once per worker) and a time limit."""

import contextlib
import signal

import pytest


@pytest.fixture(scope="session")
def smollm2():
    from golden.quality.models import load_smollm2

    return load_smollm2()


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    """Fail (never hang) when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"{what} exceeded its {seconds} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
