"""Writes attn/data/pydoc_topics.json.gz, the text of the "pydoc" corpus, from this interpreter.

CPython's `pydoc_data.topics` differs between Python versions (about 465k characters on 3.11,
505k on 3.13), so attn ships one fixed snapshot and the "pydoc" dataset reads that instead of the
running interpreter's module. The shipped file was written by CPython 3.11.7:

    python3.11 tools/pydoc_topics_snapshot.py            # rewrite the snapshot
    python3.11 tools/pydoc_topics_snapshot.py --check    # exit 1 if it differs from the file

The file is gzip-compressed JSON, {"python": "3.11.7", "topics": {name: text}}, with sorted keys
and a zero gzip timestamp, so the same interpreter always writes the same bytes. Changing it
changes every result trained on the corpus: bump `AttnPydoc.VERSION` with a release note.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import platform
import sys

SNAPSHOT = pathlib.Path(__file__).resolve().parents[1] / "attn" / "data" / "pydoc_topics.json.gz"


def snapshot_bytes() -> bytes:
    """The snapshot of this interpreter's pydoc topics, as the bytes of the file."""
    from pydoc_data.topics import topics

    document = {"python": platform.python_version(), "topics": dict(topics)}
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, indent=0)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    args = parser.parse_args(argv)
    data = snapshot_bytes()
    if args.check:
        same = SNAPSHOT.exists() and SNAPSHOT.read_bytes() == data
        print(f"{SNAPSHOT}: {'up to date' if same else 'differs from this interpreter'}")
        return 0 if same else 1
    SNAPSHOT.write_bytes(data)
    print(f"wrote {SNAPSHOT} ({len(data):,} bytes) from Python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
