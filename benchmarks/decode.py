"""Decode throughput: Simplified MIDI text files → MIDI and → piano-roll PNG, in notes per second, through `decode_files`.

    python benchmarks/decode.py                                   # MIDI: 20k, 200k, 2M notes; PNG: 20k, 200k notes
    python benchmarks/decode.py --midi 20000,200000 --png 2000,20000 --repeat 3

Each size is one text file of random piano notes (seeded: a chord every few notes, durations up to 2 s), decoded by the
library call behind `smidilab decode` (parse, write, report.json). One core, CPU time, best of `--repeat` runs (the
machine is shared). Prints a table; asserts nothing.
"""
from __future__ import annotations
import argparse, os, platform, shutil, tempfile, time
from pathlib import Path
import numpy as np


def random_piece(n: int, seed: int = 0):
    "A piano piece of `n` notes: gaps of 0 (chords) to 96 ticks, durations 1..384 ticks, pitches 21..108"
    from smidilab.core import NoteTable
    rng = np.random.default_rng(seed)
    gaps = rng.choice([0, 0, 24, 48, 96], n)
    return NoteTable(pitch=rng.integers(21, 109, n), velocity=rng.integers(1, 128, n),
                     onset=np.concatenate([[0], np.cumsum(gaps)[:-1]]), duration=rng.integers(1, 385, n))


def best_cpu(fn, repeat: int) -> float:
    "CPU seconds of the fastest of `repeat` calls of `fn`"
    best = float('inf')
    for _ in range(repeat):
        t = time.process_time(); fn(); best = min(best, time.process_time() - t)
    return best


def decode_rate(n: int, fmt: str, repeat: int) -> float:
    "Notes per CPU second of decoding one file of `n` notes to `fmt`"
    from smidilab.codec import notes_to_text
    from smidilab.convert import decode_files
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp/'in').mkdir(); (tmp/'in'/'piece.txt').write_text(notes_to_text(random_piece(n)))
        def run():
            shutil.rmtree(tmp/'out', ignore_errors=True)
            decode_files([tmp/'in'], tmp/'out', formats=(fmt,), progress=False)
            assert (tmp/'out'/f'piece.{fmt}').exists(), f'no {fmt} written'
        return n / best_cpu(run, repeat)
    finally: shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--midi', default='20000,200000,2000000', help='comma-separated note counts for MIDI')
    ap.add_argument('--png', default='20000,200000', help='comma-separated note counts for PNG')
    ap.add_argument('--repeat', type=int, default=3)
    a = ap.parse_args()
    from smidilab.core import markdown_table
    try: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError): pass
    rows = [(fmt, int(n), decode_rate(int(n), fmt, a.repeat)) for fmt, sizes in (('mid', a.midi), ('png', a.png))
            for n in sizes.split(',') if n]
    print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}), one core, CPU time, best of {a.repeat}\n")
    print(markdown_table(['format', 'notes', 'notes/s', 'seconds'], [(f, n, r, n / r) for f, n, r in rows],
                         [None, '{:,}', '{:,.0f}', '{:.2f}']))


if __name__ == '__main__': main()
