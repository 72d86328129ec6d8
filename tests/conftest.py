"""Test-wide settings: offline hub, CPU only, few threads."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# numba's compiled UMAP code: one cache for the whole test run (the layout worker of every test
# reuses it), kept out of the user's home (~/.activekd is the app's default).
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"activekd-tests-numba-{os.getuid()}"))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
