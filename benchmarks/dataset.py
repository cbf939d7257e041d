"""Seconds to build a dataset from a folder of MIDI files: encode, split, augment x3, cut to a token budget, prompts.

Run: `.venv/bin/python benchmarks/dataset.py [N_FILES] [NOTES_PER_FILE]`. Prints a table; asserts nothing.
The folder is synthetic piano music (a melody over chords, seeded), written with mido. Target: >= 50,000 notes/s.
"""
import os, platform, sys, tempfile, time
from pathlib import Path
# the folder of this script is sys.path[0]: drop it, or benchmarks/guitarpro.py would shadow the pyguitarpro package
sys.path = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).parent.resolve()]
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'true')
import numpy as np
from smidilab.core import NoteTable
from smidilab.dataset import DatasetConfig, build_dataset
from smidilab.midiwrite import midi_bytes
from smidilab.tokens import load_tokenizer

LLAMA2 = Path(os.environ.get('SMIDILAB_SHARED', Path(__file__).resolve().parents[2]/'shared'))/'tokenizers'/'llama2'/'tokenizer.model'

def piano_rows(rng, n_notes: int) -> list:
    "`(pitch, offset, quarter length, velocity)` of a melody in eighths over four-note chords each half bar"
    rows, t, pitch = [], 0.0, 72
    while len(rows) < n_notes:
        if t % 2 == 0:
            root = int(rng.integers(45, 57))
            rows += [(root + k, t, 2.0, int(rng.integers(50, 80))) for k in (0, 7, 12, 16)]
        pitch = int(np.clip(pitch + rng.integers(-4, 5), 60, 90))
        rows.append((pitch, t, float(rng.choice([0.5, 0.5, 1.0])), int(rng.integers(60, 110))))
        t += 0.5
    return rows[:n_notes]

def rows_to_notes(rows, ticks_per_quarter: int = 96) -> NoteTable:
    "The rows as a note table at 120 BPM on the 192 ticks/s grid"
    p, t, d, v = zip(*rows)
    q = lambda x: np.round(np.asarray(x) * ticks_per_quarter).astype(int)
    return NoteTable(pitch=p, velocity=v, onset=q(t), duration=q(d))

def write_folder(folder: Path, n_files: int, notes: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n_files): (folder/f'piece_{i:03d}.mid').write_bytes(midi_bytes(rows_to_notes(piano_rows(rng, notes))))
    return folder

def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c

def main(n_files: int = 40, notes: int = 2500):
    tmp = Path(tempfile.mkdtemp())
    midi = write_folder(tmp/'midi', n_files, notes) if (tmp/'midi').mkdir() is None else None
    total = n_files * notes
    _, t_tok, _ = timed(lambda: load_tokenizer('smollm2'))
    rows = []
    runs = [('smollm2, cold cache', 'smollm2', 1024, 1, 'a'), ('smollm2, cached encode', 'smollm2', 1024, 1, 'a'),
            ('smollm2, cold, 2 workers', 'smollm2', 1024, 2, 'b')]
    if LLAMA2.exists(): runs.append(('llama2, 16384 tokens, cached', str(LLAMA2), 16384, 1, 'a'))
    else: print(f'llama2 row skipped: {LLAMA2} is not available (set SMIDILAB_SHARED to the shared folder)')
    for label, tok, max_tokens, workers, out in runs:
        cfg = DatasetConfig(midi_dirs=[str(midi)], out_dir=str(tmp/out), augment=3, max_tokens=max_tokens, tokenizer=tok,
                            workers=workers)
        m, secs, cpu = timed(lambda: build_dataset(cfg, progress=False))
        examples = sum(c['examples'] for c in m['counts'].values())
        if m['failed']: print(label, 'failed:', m['failed'])
        rows.append((label, n_files, total, examples, secs, cpu, total / secs))
    print(f"dataset build, {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          f"(tokenizer load {t_tok:.1f} s, not included; augment x3; notes/s = input notes / wall seconds; "
          f"cpu s = this process only)")
    print(f"| {'run':32} | files |  notes | examples | seconds | cpu s | notes/s |")
    print(f"|{'-' * 34}|------:|-------:|---------:|--------:|------:|--------:|")
    for label, f, n, e, s, c, r in rows:
        print(f"| {label:32} | {f:5d} | {n:6d} | {e:8d} | {s:7.2f} | {c:5.2f} | {r:7.0f} |")

if __name__ == '__main__':
    main(*map(int, sys.argv[1:]))
