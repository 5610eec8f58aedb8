"""Build the study's real-text token corpus from pinned Debian documentation packages.

    .venv/bin/python scripts/build_study_corpus.py --download --cache /work/study-debs --out study-data
    .venv/bin/python scripts/build_study_corpus.py --debs DIR --out study-data   # .deb files already here

``--download`` fetches each pinned package with ``apt-get download NAME=VERSION`` into ``--cache`` (files
already there are reused); either way every ``.deb`` is checked against its pinned sha256. The output folder
(``manifest.json``, ``tokenizer.json``, ``train.bin``, ``held_out.bin``, ``PROVENANCE.md``, one
``copyright-<package>.txt`` per package) is described in docs/study/corpus.md. Same ``.deb`` files and flags
give the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sn29_growth.study.realtext import (
    PINNED,
    BuildSettings,
    DebError,
    build_corpus,
    download_debs,
    locate_debs,
)
from sn29_growth.train.tokens import TokenCorpusError

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    defaults = BuildSettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--debs", type=Path, help="folder holding the pinned .deb files")
    source.add_argument("--download", action="store_true", help="fetch missing .deb files with apt-get")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "sn29-growth" / "debs", help="download folder"
    )
    parser.add_argument("--out", type=Path, default=REPO / "study-data", help="corpus folder to write")
    parser.add_argument("--vocab", type=int, default=defaults.vocab_size, help="BPE vocabulary size")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens, help="cap on all tokens")
    parser.add_argument(
        "--held-out-fraction", type=float, default=defaults.held_out_fraction, help="share of documents"
    )
    parser.add_argument(
        "--chunk-tokens",
        type=int,
        default=defaults.chunk_tokens,
        help="cut documents into pieces of N tokens, shuffled (0: whole documents)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        settings = BuildSettings(
            vocab_size=args.vocab,
            max_tokens=args.max_tokens,
            held_out_fraction=args.held_out_fraction,
            chunk_tokens=args.chunk_tokens,
        )
        debs = download_debs(PINNED, args.cache) if args.download else locate_debs(PINNED, args.debs)
        corpus = build_corpus(
            debs,
            args.out,
            settings=settings,
            overwrite=args.overwrite,
            log=lambda line: print(f"[{time.monotonic() - start:6.0f}s] {line}", flush=True),
        )
    except (DebError, TokenCorpusError, ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in corpus.folder.iterdir())
    print(f"{corpus.folder}: {size / 2**20:.1f} MiB in {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
