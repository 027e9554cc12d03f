"""Reading text files a person or an export wrote: where a file stops being UTF-8, said as an editor counts."""

from __future__ import annotations

from pathlib import Path


def first_undecodable(path: Path) -> str:
    """Where the first byte of `path` that is not UTF-8 sits, as ``line N (byte M)``, both counted as an editor
    does (lines from 1, bytes from 0)."""
    offset = 0
    with open(path, "rb") as handle:
        # Line by line is exact: a newline byte never occurs inside a multi-byte UTF-8 sequence.
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number} (byte {offset + exc.start})"
            offset += len(line)
    return "a byte"  # the file changed since it was read
