"""`smidilab prepare` on GiantMIDI- and DadaGP-size folders: seconds, notes/s and peak memory of the whole process tree.

    python benchmarks/scale.py                                  # MIDI 1k, 3k, 10k files; Guitar Pro 1k, 3k files
    python benchmarks/scale.py --midi 200 --gp 100 --notes 800  # a quick look
    python benchmarks/scale.py --midi 1000 --gp --python OLD/.venv/bin/python --pythonpath OLD   # another checkout

The corpora are synthetic but made of real music: each MIDI file strings together pieces of the embedded corpus (the
music21 pieces of `smidilab.corpus.DEFAULT_PIECES`), each transposed and played at another tempo, about `--notes` notes
per file (GiantMIDI-Piano averages ~3,500); each Guitar Pro file strings together `--riffs` generated metal riffs with
bends (`smidilab.corpus.guitar_riff`), one track. Every file differs, so nothing is served from the encoding cache. The
MIDI writer here is a small vectorised one (type 0, 96 ticks per quarter at 120 bpm = the 192 ticks/s grid); the note
count of every corpus is checked against the dataset's manifest, which counts what the reader found.

Each corpus is built by `smidilab prepare` (the job notebook, in its own process tree: CLI, papermill, kernel, workers)
with `--augment 3` and `-p workers W`. The table gives files, input notes, wall seconds of the whole command (kernel
start included), input notes/s, notes/s counting every augmented copy (train notes x 4 + validation + test), CPU
seconds of the process tree, the notes with copies per 2 CPU seconds (what 2 free cores would give if the work were
perfectly parallel: a figure that does not depend on how busy a shared machine is), and the peak of the summed RSS of the process tree, sampled every 0.2 s with psutil. The
last line is the ratio of the peak RSS of the largest MIDI corpus to the smallest's. Corpora and datasets live under
`--tmp` (default /tmp/smidilab-scale) and each dataset is deleted after it is measured. Asserts nothing.
"""
import argparse, json, os, platform, resource, shutil, subprocess, sys, threading, time
from pathlib import Path
sys.path = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).parent.resolve()]  # no shadowing by this folder
import numpy as np

TPQ = 96  # ticks per quarter note; at 120 bpm one tick is 1/192 s, the dataset's default grid

def corpus_pieces() -> list:
    "The embedded corpus pieces as (pitch, velocity, onset, duration) arrays on the 192 ticks/s grid"
    from smidilab.corpus import DEFAULT_PIECES, corpus_notes
    pieces = [corpus_notes(name, ticks_per_second=192, bpm=120, velocity='accent') for name in DEFAULT_PIECES]
    return [(p.pitch, p.velocity, p.onset, np.maximum(p.duration, 1)) for p in pieces]

def synthetic_notes(k: int, pieces: list, target: int) -> tuple:
    "The notes of synthetic file `k`: embedded pieces, each transposed and at another tempo, one after another"
    rng, cols, at = np.random.default_rng(k), [[], [], [], []], 0
    want = int(target * rng.uniform(0.5, 1.5))
    while sum(map(len, cols[0])) < want:
        p, v, on, d = pieces[int(rng.integers(len(pieces)))]
        shift, tempo = int(rng.integers(-6, 7)), rng.uniform(0.8, 1.25)
        on2, d2 = np.round(on * tempo).astype(int), np.maximum(1, np.round(d * tempo).astype(int))
        for c, x in zip(cols, (np.clip(p + shift, 21, 108), v, on2 + at, d2)): c.append(x)
        at = int((on2 + d2).max()) + at + 96
    return tuple(np.concatenate(c) for c in cols)

def _vlq(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    "MIDI variable-length quantities of `values` (< 2**28): the bytes, and how many each value takes"
    values = np.asarray(values, np.int64)
    n = 1 + (values >= 1 << 7) + (values >= 1 << 14) + (values >= 1 << 21)
    out = np.zeros((len(values), 4), np.uint8)
    for k in range(4):  # byte k from the end
        out[:, 3 - k] = ((values >> (7 * k)) & 0x7F) | (0x80 if k else 0)
    keep = np.arange(4)[None, :] >= 4 - n[:, None]
    return out[keep], n

def midi_file(pitch, velocity, onset, duration) -> bytes:
    "A type-0 MIDI file of the notes on channel 0 (note-offs before note-ons at equal ticks)"
    ticks = np.concatenate([onset + duration, onset])
    kind = np.r_[np.zeros(len(pitch), int), np.ones(len(pitch), int)]  # 0 = off, 1 = on
    order = np.lexsort((kind, ticks))
    ticks, kind = ticks[order], kind[order]
    pitches, vels = np.r_[pitch, pitch][order], np.r_[np.full(len(pitch), 64), velocity][order]
    delta, n = _vlq(np.diff(np.r_[0, ticks]))
    events = np.stack([np.where(kind == 1, 0x90, 0x80), pitches, vels], 1).astype(np.uint8)
    body = np.empty(int(n.sum()) + 3 * len(ticks), np.uint8)
    starts = np.cumsum(np.r_[0, n[:-1] + 3])
    within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)  # the place of each byte in its quantity
    body[np.repeat(starts, n) + within] = delta
    for j in range(3): body[starts + n + j] = events[:, j]
    track = b'\x00\xff\x51\x03\x07\xa1\x20' + body.tobytes() + b'\x00\xff\x2f\x00'  # 120 bpm, the notes, end of track
    return b'MThd' + (6).to_bytes(4, 'big') + bytes([0, 0, 0, 1, 0, TPQ]) + b'MTrk' + len(track).to_bytes(4, 'big') + track

def write_midi_corpus(folder: Path, n_files: int, target: int) -> int:
    "Write `n_files` synthetic MIDI files (kept if the folder is complete); their total number of notes"
    pieces, total = corpus_pieces(), 0
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_files):
        notes = synthetic_notes(k, pieces, target)
        path = folder/f'{k // 1000:02d}'/f'piece_{k:05d}.mid'
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(midi_file(*notes))
        total += len(notes[0])
    return total

def write_gp_corpus(folder: Path, n_files: int, riffs: int) -> int:
    "Write `n_files` Guitar Pro 5 files of `riffs` riffs each, with bends (kept if present); their total number of notes"
    from smidilab.corpus import guitar_riff, riff_notes
    from smidilab.fingering import STANDARD_TUNING
    from smidilab.tablature import write_gp5
    total = 0
    for k in range(n_files):
        parts = [guitar_riff(k * riffs + j) for j in range(riffs)]
        notes = riff_notes([bar for bars, _ in parts for bar in bars], parts[0][1])
        path = folder/f'{k // 1000:02d}'/f'song_{k:05d}.gp5'
        if not path.exists(): write_gp5(notes, path, tuning=STANDARD_TUNING, tempo=parts[0][1], overwrite=True)
        total += len(notes)
    return total

def tree_rss(proc) -> int:
    "Summed RSS (bytes) of a psutil process and all its descendants"
    import psutil
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try: total += p.memory_info().rss
        except psutil.Error: pass
    return total

def run_measured(cmd: list, env: dict, cwd, every: float = 0.2) -> dict:
    "Run `cmd` in `cwd`; its wall seconds, CPU seconds of the process tree, peak summed RSS (bytes) and exit code"
    import psutil
    before, start, peak = resource.getrusage(resource.RUSAGE_CHILDREN), time.time(), [0]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched, done = psutil.Process(proc.pid), threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(watched)); done.wait(every)
    threading.Thread(target=sample, daemon=True).start()
    out = proc.communicate()[0]
    done.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(seconds=time.time() - start, cpu=cpu, peak=peak[0], code=proc.returncode, output=out)

def prepare(kind: str, corpus: Path, out: Path, args) -> dict:
    "`smidilab prepare` of one corpus, measured, with its manifest"
    shutil.rmtree(out, ignore_errors=True)
    cli = [args.python, '-c', 'import sys; from smidilab.cli import main; sys.exit(main())']
    cmd = cli + ['prepare', f'--{kind}', str(corpus), '-o', str(out), '--augment', '3', '-p', 'workers', str(args.workers)]
    env = os.environ | {'HF_HUB_OFFLINE': '1'} | ({'PYTHONPATH': args.pythonpath} if args.pythonpath else {})
    result = run_measured(cmd, env, cwd=out.parent)  # not the repository: `python -c` would import the package found there
    if result['code']: print(result['output'][-3000:], file=sys.stderr)
    result['manifest'] = json.loads((out/'manifest.json').read_text()) if (out/'manifest.json').exists() else None
    if not args.keep: shutil.rmtree(out, ignore_errors=True)
    return result

def row(kind: str, files: int, notes: int, r: dict) -> dict:
    "The table row of one measured build (augmented notes from the manifest's split counts)"
    c = r['manifest']['counts'] if r['manifest'] else None
    found = sum(s['notes'] for s in c.values()) if c else None
    augmented = c['train']['notes'] * 4 + c['validation']['notes'] + c['test']['notes'] if c else None
    return dict(corpus=kind, files=files, notes=notes, found=found, seconds=r['seconds'], rate=notes / r['seconds'],
                aug_rate=augmented / r['seconds'] if augmented else None, cpu=r['cpu'], peak_mb=r['peak'] / 2**20,
                cpu_rate=2 * augmented / r['cpu'] if augmented else None,
                failed=len(r['manifest']['failed']) if r['manifest'] else None, code=r['code'])

def print_table(rows: list, args):
    print(f"\nsmidilab prepare at scale: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}, workers {args.workers}, augment x3, python {args.python}")
    print('| corpus | files | notes | notes found | failed | seconds | notes/s | notes/s with copies | CPU s (tree) | '
          'with copies per 2 CPU s | peak RSS MB (tree) |')
    print('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|')
    for r in rows:
        f = lambda v, fmt: '–' if v is None else format(v, fmt)
        print(f"| {r['corpus']} | {r['files']:,} | {r['notes']:,} | {f(r['found'], ',')} | {f(r['failed'], ',')} | "
              f"{r['seconds']:.0f} | {r['rate']:,.0f} | {f(r['aug_rate'], ',.0f')} | {r['cpu']:.0f} | {f(r['cpu_rate'], ',.0f')} | "
              f"{r['peak_mb']:,.0f} |")
    midi = [r for r in rows if r['corpus'] == 'midi']
    if len(midi) > 1:
        print(f"\npeak RSS {midi[-1]['files']:,} / {midi[0]['files']:,} MIDI files: {midi[-1]['peak_mb'] / midi[0]['peak_mb']:.2f}")

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--midi', type=int, nargs='*', default=[1000, 3000, 10000], help='MIDI corpus sizes (files)')
    ap.add_argument('--gp', type=int, nargs='*', default=[1000, 3000], help='Guitar Pro corpus sizes (files)')
    ap.add_argument('--notes', type=int, default=3500, help='mean notes per MIDI file')
    ap.add_argument('--riffs', type=int, default=6, help='riffs (8 bars each) per Guitar Pro file')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--tmp', default='/tmp/smidilab-scale')
    ap.add_argument('--python', default=sys.executable, help='the Python whose smidilab runs the builds')
    ap.add_argument('--pythonpath', default='', help='PYTHONPATH for the builds (another checkout)')
    ap.add_argument('--keep', action='store_true', help='keep the built datasets')
    args = ap.parse_args()
    tmp, rows = Path(args.tmp), []
    for kind, sizes, write, size in (('midi', args.midi, write_midi_corpus, args.notes), ('gp', args.gp, write_gp_corpus, args.riffs)):
        for n in sizes:
            t = time.time()
            notes = write(tmp/f'{kind}-{n}'/kind, n, size)
            print(f'{kind} corpus of {n:,} files, {notes:,} notes: written in {time.time() - t:.0f} s', flush=True)
            rows.append(row(kind, n, notes, prepare(kind, tmp/f'{kind}-{n}'/kind, tmp/f'{kind}-{n}-dataset', args)))
            print_table(rows[-1:], args)
    print_table(rows, args)

if __name__ == '__main__':
    main()
