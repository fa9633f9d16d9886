import pytest

from tests.workers import worker_threads


@pytest.fixture
def running():
    """Start worker loops in threads; they are stopped and joined after the test."""
    with worker_threads() as start:
        yield start
