"""Shared pytest setup for the integration tests."""

import os
import sys

# The test world's Python helpers (client.py: the World context manager).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "world"))
