"""Ops tests run torch single-threaded.

The vectorised ops issue many small tensor ops; with several intra-op threads on a loaded machine (pytest-xdist
workers, other jobs) each op can wait milliseconds for its thread team, making a sub-second test take tens of
seconds. One thread keeps the suite fast and its timing stable; results do not depend on the thread count.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
