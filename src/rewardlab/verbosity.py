"""Quiet by default: the libraries' own progress bars and warnings a user can do nothing about.

transformers prints "Loading weights" and "Writing model shards" bars, token-length warnings and
advisory notes; huggingface_hub and datasets print download and map bars; the libraries raise
deprecation warnings about their own internals. The CLI turns all of that off unless ``--verbose``.
rewardlab's own progress bars (training, scoring, episodes) and its own messages are untouched.

Environment variables are set as well as the live switches, so libraries imported later, and child
processes (``accelerate launch``, sandboxed workers), start quiet too. A variable the user has set
is left alone.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

_QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# Loggers of libraries whose warnings are about their own internals or defaults we already chose.
_QUIET_LOGGERS = ("transformers", "accelerate", "peft", "trl", "datasets", "huggingface_hub", "httpx", "torch.distributed")

# Warnings about the libraries' own code paths (not about anything the user passed).
_QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def quiet_libraries() -> None:
    """Silence third-party progress bars and non-actionable warnings for this process and its children."""
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for category in _QUIET_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Libraries already imported read the environment at import time; switch them off directly.
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
