"""Keep numba's compiled machine code on disk so a restarted server skips UMAP's compile.

umap-learn and pynndescent are numba code. pynndescent marks most of its functions
``cache=True``, umap-learn marks almost none, so every new process recompiles umap's graph
and layout functions on its first fit (13-15 s of a 2,000-point layout on a 2-core CPU, on
top of ~14 s for pynndescent's first import). Two steps fix that, both in the process that
runs UMAP and before its first fit:

1. ``NUMBA_CACHE_DIR`` points numba's cache at ``<ACTIVEKD_HOME>/numba_cache`` (default
   ``~/.activekd/numba_cache``), a folder the app owns, instead of ``__pycache__`` folders
   next to the installed packages (often read-only). It must be set before numba is
   imported: numba reads it once.
2. ``enable_umap_caching`` turns on numba's own file cache (``Dispatcher.enable_caching``,
   what ``cache=True`` does) for every not-yet-compiled jitted function of umap-learn and
   pynndescent. Numba keys each cache entry by the source file's path and modification
   time, the function's signature and the CPU, so an upgraded package or another machine
   recompiles instead of loading stale code. Functions numba cannot cache (closures built
   at run time) are compiled as before.

The cache holds only machine code that numba generated from the installed packages' own
source on this machine; nothing from a project folder is loaded.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

ENV_HOME = "ACTIVEKD_HOME"
ENV_SWITCH = "ACTIVEKD_NUMBA_CACHE"  # "0" / "off" / "false" / "no": compile in every process as before
ENV_NUMBA = "NUMBA_CACHE_DIR"
_PACKAGES = ("umap", "pynndescent")


def numba_cache_dir() -> Path:
    """``$ACTIVEKD_HOME/numba_cache`` (``~/.activekd/numba_cache`` when unset)."""
    home = os.environ.get(ENV_HOME, "").strip() or "~/.activekd"
    return Path(home).expanduser() / "numba_cache"


def configure_numba_cache() -> Path | None:
    """Point ``NUMBA_CACHE_DIR`` at the app's cache folder, unless it is already set.

    Call before numba is imported (numba reads the variable at import time). An existing
    ``NUMBA_CACHE_DIR`` (an operator's choice) is kept. ``ACTIVEKD_NUMBA_CACHE=0`` turns
    the disk cache off.

    Returns:
        The cache folder in effect, or None when the cache is switched off, numba was already
        imported without a cache folder (the call then changes nothing), or the folder cannot
        be created or written.
    """
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    current = os.environ.get(ENV_NUMBA, "").strip()
    if current:
        return Path(current) if os.access(current, os.W_OK) else None
    if "numba" in sys.modules:
        return None  # too late: numba has read its configuration
    folder = numba_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    os.environ[ENV_NUMBA] = str(folder)
    return folder


def enable_umap_caching() -> int:
    """Turn on numba's disk cache for umap-learn's and pynndescent's jitted functions.

    Imports umap (and with it pynndescent and numba). Functions already compiled in this
    process or already cached are left alone. Call only when ``configure_numba_cache``
    returned a folder: numba raises on compile when it finds no writable cache location.

    Returns:
        How many functions had caching switched on.
    """
    import umap  # noqa: F401 - imports every submodule whose functions are switched on below
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    enabled = 0
    names = [m for m in list(sys.modules) if m.split(".", 1)[0] in _PACKAGES]
    for name in names:
        module = sys.modules.get(name) or importlib.import_module(name)
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache) and not value.overloads:
                value.enable_caching()
                enabled += 1
    return enabled
