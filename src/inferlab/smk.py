"""Glue for the thin scripts under workflow/scripts: logging into the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


@contextlib.contextmanager
def logged(log_path):
    """Send stdout, stderr and logging of this script to the rule's ``log:`` file."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        logging.basicConfig(stream=f, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=f)
            raise


def load_config(snakemake):
    """The validated Config in a script (the rule passes the preset dict as params.preset)."""
    from . import config

    return config.load(snakemake.params.preset, base_dir=Path(snakemake.scriptdir).resolve().parents[1])


def add_src_to_path(scriptdir) -> None:
    src = str(Path(scriptdir).resolve().parents[1] / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
