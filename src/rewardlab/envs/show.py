"""Finding one episode in a run folder and printing it as a readable transcript."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rewardlab.envs.protocol import render_transcript
from rewardlab.envs.records import RunFolderError, load_episodes


def find_episode(folder: Path, key: str) -> dict[str, Any]:
    """The episode whose id is ``key``; a bare number selects by index when that is unambiguous."""
    records = load_episodes(Path(folder)).records
    for record in records:
        if record["id"] == key:
            return record
    if key.isdigit():
        matches = [record for record in records if record.get("index") == int(key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(record["id"] for record in matches[:6])
            raise RunFolderError(f"index {key} matches several episodes ({ids}); pass the full id")
    examples = ", ".join(record["id"] for record in records[:3]) or "none"
    raise RunFolderError(f"no episode {key!r} in {folder} (ids look like: {examples})")


# C0 and C1 control characters other than newline and tab, DEL, and bidirectional-text overrides: a policy's
# output could otherwise move the cursor, recolour or rewrite the terminal of whoever reads the episode.
_UNSAFE_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_control_characters(text: str) -> str:
    """``text`` safe to print on a terminal: unsafe characters shown as ``\\xNN`` / ``\\uNNNN`` escapes."""
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNSAFE_CHARACTERS.sub(escape, text)


def format_episode(record: dict[str, Any]) -> str:
    """Header (outcome, evidence, commands, timings) followed by the Human/Assistant transcript.

    Everything a policy wrote is shown with its control characters escaped.
    """
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in record.get("timings", {}).items())
    lines = [
        f"episode   {record['id']}",
        f"env       {record['env']}  (variant {record.get('index')}, seed {record.get('seed')})",
        f"policy    {record.get('policy')}    sandbox {record.get('sandbox')}",
        f"outcome   {record['outcome']}{'  [GAMED]' if record.get('gamed') else ''}",
        f"evidence  {json.dumps(record.get('details', {}), ensure_ascii=False)}",
        f"commands  {len(record.get('commands', []))}{'  (stopped at the command limit)' if record.get('hit_command_limit') else ''}",
        f"files     {json.dumps(record.get('files_changed', {}))}",
        f"timings   {timings}",
        "",
        "=" * 78,
        render_transcript(record.get("messages", [])),
        "=" * 78,
        "final answer (what graders see, <cot> removed):",
        record.get("final_answer", ""),
    ]
    return escape_control_characters("\n".join(lines))
