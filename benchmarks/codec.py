"""Notes per second for MIDI file → text and text → notes, with symusic (parse + the same text formatting) as yardstick.

    python benchmarks/codec.py                 # 40 music21 Bach chorales, written to a temporary folder
    python benchmarks/codec.py DIR [--repeat 5]

One core, CPU time, best of `--repeat` runs (on a shared machine the best run is the least disturbed). Prints a table; asserts nothing.
"""
from __future__ import annotations
import argparse, os, platform, tempfile, time
from pathlib import Path
import numpy as np

def chorales(folder: Path, n: int = 40) -> list[Path]:
    "Write the first `n` Bach chorales of music21's corpus as MIDI files into `folder`"
    import music21
    paths = []
    for i, p in enumerate(music21.corpus.getComposer('bach')[:n]):
        paths.append(folder/f'{i:02d}_{Path(p).stem}.mid')
        music21.corpus.parse(p).write('midi', fp=paths[-1])
    return paths

def symusic_notes(data: bytes, ticks_per_second: int):
    "The yardstick's reading: symusic parses, its non-drum notes become a NoteTable (one tempo, no pairing rules)"
    import symusic
    from smidilab.core import NoteTable
    s = symusic.Score.from_midi(data)
    arrs = [t.notes.numpy() for t in s.tracks if not t.is_drum] or [dict(time=[], duration=[], pitch=[], velocity=[])]
    c = {k: np.concatenate([a[k] for a in arrs]).astype(np.int64) for k in ('time', 'duration', 'pitch', 'velocity')}
    scale = ticks_per_second / (2 * s.ticks_per_quarter)   # 120 bpm; the real reader applies the tempo map exactly
    on, off = np.rint(c['time'] * scale).astype(np.int64), np.rint((c['time'] + c['duration']) * scale).astype(np.int64)
    return NoteTable(pitch=c['pitch'], velocity=c['velocity'], onset=on - on.min(initial=0), duration=off - on)

def best_time(fn, items, repeat: int) -> float:
    "CPU seconds of the fastest of `repeat` runs of `fn` over `items` (CPU time: the machine is shared)"
    best = float('inf')
    for _ in range(repeat):
        t = time.process_time()
        for x in items: fn(x)
        best = min(best, time.process_time() - t)
    return best

def main(folder: str | None = None, repeat: int = 5):
    from smidilab.codec import notes_to_text, text_to_notes
    from smidilab.midi import read_midi
    try: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError): pass
    tmp = tempfile.TemporaryDirectory()
    paths = sorted(Path(folder).rglob('*.mid')) if folder else chorales(Path(tmp.name))
    datas = [p.read_bytes() for p in paths]
    tables = [read_midi(d) for d in datas]
    texts = [notes_to_text(t) for t in tables]
    n = sum(map(len, tables))
    rows = {'MIDI → text, smidilab (auto engine)': lambda d: notes_to_text(read_midi(d)),
            'MIDI → text, smidilab (mido engine)': lambda d: notes_to_text(read_midi(d, engine='mido')),
            'MIDI → text, symusic + same formatting': lambda d: notes_to_text(symusic_notes(d, 192))}
    rates = {k: n / best_time(fn, datas, repeat if 'mido' not in k else 1) for k, fn in rows.items()}
    rates['text → notes, smidilab'] = n / best_time(text_to_notes, texts, repeat)
    yard = rates['MIDI → text, symusic + same formatting']
    print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}), one core, CPU time, best of {repeat}")
    print(f"corpus: {len(paths)} files, {n} notes ({folder or 'music21 Bach chorales'})\n")
    print(f"| {'task':<42} | {'notes/s':>12} | {'× symusic':>9} |\n|{'-'*44}|{'-'*14}|{'-'*11}|")
    for k, r in rates.items():
        ratio = f'{r / yard:.2f}' if k.startswith('MIDI') else ''
        print(f"| {k:<42} | {r:>12,.0f} | {ratio:>9} |")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folder', nargs='?', help='folder of .mid files (default: 40 music21 chorales)')
    ap.add_argument('--repeat', type=int, default=5)
    a = ap.parse_args()
    main(a.folder, a.repeat)
