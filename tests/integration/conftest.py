"""Shared pytest setup for the integration tests."""

import os
import sys

# The test world's Python helpers (client.py: the World context manager).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "world"))


import pytest  # noqa: E402  (after the path set-up above)


@pytest.fixture(scope="module")
def kill_shim(tmp_path_factory):
    """stress_helpers.KILL_SHIM_C built once per test module: an LD_PRELOAD library that kills
    the process at a chosen step of an LMDB commit."""
    import stress_helpers

    library = stress_helpers.build_kill_shim(tmp_path_factory.mktemp("shim"))
    if library is None:
        pytest.fail("gcc is not installed (apt-get install gcc): it builds the kill shim")
    return library
