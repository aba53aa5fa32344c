"""Paths shared by the tests: the repository root and the real-data folder."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared real-data folder: $MPCODEC_DATA_DIR, else ../shared/data beside the repository.
DATA_DIR = Path(os.environ.get("MPCODEC_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
