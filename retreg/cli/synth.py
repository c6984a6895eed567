"""`retreg synth`: render procedural CF/FA/OCT/OCTA cases to a folder.

Case i gets seed S+i and is named after it, so sets drawn from different seed ranges never
share an eye: training uses seeds from 0, evaluation from 10_000_000 (see
``training.synth.case``). Cases are rendered in a process pool, one case per task.
"""
from __future__ import annotations

import functools
import os
from multiprocessing import get_context
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "synth", help="render synthetic multimodal cases (CF, FA, OCT, CF clip, OCTA + truth)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--cases", required=True, type=int, help="number of cases")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the first case; case i uses seed+i (train: 0, eval: 10000000)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--contact-sheet", type=Path, default=None,
                   help="also write a PNG grid of the first cases here")
    p.set_defaults(func=run)


def _init_worker() -> None:
    """One thread per worker: the pool already uses the cores."""
    import cv2

    cv2.setNumThreads(1)


def run(args) -> int:
    from tqdm import tqdm

    from retreg.training.synth.writer import render_and_write

    if args.cases < 1:
        raise ValueError(f"--cases must be at least 1 (got {args.cases})")
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative (got {args.seed})")
    if not 64 <= args.size <= 4096:
        raise ValueError(f"--size must be between 64 and 4096 pixels (got {args.size})")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = range(args.seed, args.seed + args.cases)
    work = functools.partial(render_and_write, args.out, size=args.size)
    bar = tqdm(total=args.cases, unit="case", desc="synth")
    if args.workers == 1:
        for s in seeds:
            work(s)
            bar.update()
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(work, seeds, chunksize=1):
                bar.update()
    bar.close()
    if args.contact_sheet is not None:
        from retreg.training.synth.contact_sheet import write_contact_sheet

        write_contact_sheet(args.contact_sheet, list(seeds)[:6], args.size)
    print(f"wrote {args.cases} cases to {args.out}")
    return 0
