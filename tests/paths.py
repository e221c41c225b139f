"""The repository root, for tests that start subprocesses or read committed files."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
