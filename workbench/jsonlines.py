"""One row of a JSON-lines file, read the same way wherever the project reads one (a dataset's first row
in the preflight, a `workbench export` file on import): a dict, or a ValueError saying what it is instead.
"""

from __future__ import annotations

import json


def json_object(line: str) -> dict:
    """The JSON object on one line; ValueError('not JSON (<why>)') or ValueError('not a JSON object (one per
    line)'), for the caller to prefix with the file and line number."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("not a JSON object (one per line)")
    return row
