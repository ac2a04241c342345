"""RM-Bench layout (Liu et al. 2024; hub ``THU-KEG/RM-Bench``, split ``train``).

One record: ``{"id", "prompt": str, "chosen": [3 str], "rejected": [3 str], "domain": str}``.
The three answers of each side are the same content in three styles, in this order: concise,
detailed plain text, detailed with Markdown. ``domain`` is ``chat``, ``code``, ``math``,
``safety-refuse`` or ``safety-response``; scores group it by prefix into chat, math, code and
safety, as the reference code does. The per-domain files of the reference repository
(``chat_filtered.json``, …) carry no ``domain`` field; for them the file name gives it, and a
folder holding them (the repository's ``data/``) is read file by file. Any other folder, such as a
copy of the hub repository (``total_dataset.json``), and the hub name go through ``datasets``.

Each record becomes one `EvalItem` whose three correct answers are the chosen styles and whose
rejected answers are the rejected styles, so every answer is scored once through the common
scoring path; `rewardlab.evaluate.rmbench` turns the six rewards into the 3×3 style matrix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rewardlab.data.loaders import DataError, LoadReport, parse_spec
from rewardlab.evaluate.formats.common import read_source, require
from rewardlab.evaluate.formats.rewardbench import benchmark_prompt
from rewardlab.evaluate.items import EvalItem

RMBENCH_FORMAT = "rm-bench"
RMBENCH_DATASET = "rm-bench"
RMBENCH_HUB = "THU-KEG/RM-Bench"
RMBENCH_SPLIT = "train"
STYLES = ("concise", "detailed plain", "detailed markdown")
DOMAINS = ("chat", "math", "code", "safety")  # the scored domains, in the reference code's order
DOMAIN_FILE = re.compile(r"^(chat|code|math|safety-refuse|safety-response)_filtered\.jsonl?$")


def domain_group(domain: str) -> str | None:
    """The scored domain a record's ``domain`` belongs to (by prefix, e.g. safety-refuse → safety)."""
    return next((name for name in DOMAINS if domain.startswith(name)), None)


def domain_from_file_name(spec: str | Path) -> str | None:
    """The domain of a reference per-domain file such as ``code_filtered.json`` (None otherwise)."""
    match = DOMAIN_FILE.match(Path(parse_spec(str(spec))[0]).name)
    return match.group(1) if match else None


def _styles(record: Any, field: str, location: str) -> list[str]:
    value = require(record, field, location)
    if not isinstance(value, list) or len(value) != len(STYLES):
        size = f"{len(value)} entries" if isinstance(value, list) else type(value).__name__
        raise DataError(location, f"field '{field}' must be a list of {len(STYLES)} strings ({', '.join(STYLES)}), got {size}")
    for index, entry in enumerate(value):
        if not isinstance(entry, str):
            raise DataError(location, f"{field}[{index}] must be a string, got {type(entry).__name__}")
    return list(value)


def _domain(record: Any, location: str, fallback: str | None) -> str:
    value = record.get("domain")
    if value is None:
        if fallback is None:
            raise DataError(location, "missing field 'domain' (one of chat, code, math, safety-refuse, safety-response)")
        return fallback
    if not isinstance(value, str) or domain_group(value) is None:
        raise DataError(location, f"field 'domain' must start with {', '.join(DOMAINS)}; got {value!r}")
    return value


def _domain_files(spec: str) -> list[Path]:
    """The reference repository's per-domain files in a local folder (none for anything else)."""
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        return []
    return sorted(file for file in folder.iterdir() if file.is_file() and DOMAIN_FILE.match(file.name))


def load_rmbench(path: str | Path, *, report: LoadReport | None = None) -> list[EvalItem]:
    """Load RM-Bench items from a JSON/JSON Lines file, a local folder or the hub name."""
    files = _domain_files(str(path))
    if files:  # the reference repository's data/ folder: its total_dataset.json repeats these records
        return [item for file in files for item in load_rmbench(file, report=report)]
    fallback = domain_from_file_name(path)
    items: list[EvalItem] = []
    for location, record in read_source(path, default_split=RMBENCH_SPLIT):
        prompt = benchmark_prompt(record, location)
        chosen = _styles(record, "chosen", location)
        rejected = _styles(record, "rejected", location)
        domain = _domain(record, location, fallback)
        items.append(
            EvalItem(
                prompt=prompt,
                chosen=chosen[0],
                also_correct=tuple(chosen[1:]),
                rejected=tuple(rejected),
                dataset=RMBENCH_DATASET,
                subset=domain,
                meta={"id": record.get("id"), "source": location, "domain": domain_group(domain)},
                format=RMBENCH_FORMAT,
            )
        )
    return items
