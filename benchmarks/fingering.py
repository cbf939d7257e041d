"""How often the tablature writer's fingering matches the original tab, and the residual timing error of GP5 export.

    python benchmarks/fingering.py                      # the Guitar Pro fixtures in tests/fixtures/guitarpro
    python benchmarks/fingering.py DIR [--min-notes 8]

Fingering: every pitched track of every file is read as written (pyguitarpro, no repeats), its notes are given to
`smidilab.fingering.assign_strings` with the track's own tuning, and the (string, fret) chosen is compared with the
score's. A table per file (notes, % matched) and the mean over files; files with fewer than `--min-notes` notes are
listed but left out of the mean.

Timing: each file is read (`read_gp_report`), written back with `write_gp5` (its time signatures and tempo changes
passed on, and once without them, as decoded text would be) and read again; the table gives the largest and mean
onset error in grid ticks (1/192 s). Prints tables; asserts nothing.
"""
import argparse, inspect, sys, tempfile
from pathlib import Path
# this folder holds guitarpro_speed.py; keep the script's folder off the path so that `guitarpro` is pyguitarpro
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
import numpy as np
import guitarpro as gp
from smidilab.core import find_inputs, GP_EXTS
from smidilab import fingering, tablature

DEFAULT = Path(__file__).resolve().parents[1] / 'tests' / 'fixtures' / 'guitarpro'


def written_notes(track: gp.Track):
    "(pitch, start, end in 64th notes, string index from 0, bent) of every played note of a track, as written"
    tuning = [s.value + track.offset for s in track.strings]
    out = []
    for m in track.measures:
        for v in m.voices:
            for b in v.beats:
                for n in b.notes:
                    if n.type == gp.NoteType.normal and 1 <= n.string <= len(tuning):
                        start = round(b.start / 15)
                        out.append((tuning[n.string - 1] + n.value, start, start + max(1, round(b.duration.time / 15)),
                                    n.string - 1, n.effect.isBend))
    return tuple(tuning), out


def fingering_rows(paths: list, min_notes: int) -> list:
    "(file, track, notes, matched) of every pitched track"
    rows = []
    for p in paths:
        try: song = gp.parse(str(p))
        except Exception: continue
        for t in song.tracks:
            if t.isPercussionTrack or t.channel.isPercussionChannel: continue
            tuning, notes = written_notes(t)
            if not notes: continue
            pitch, start, end, string, bent = (np.array(c) for c in zip(*notes))
            order = np.lexsort((-pitch, start))
            kw = {'bent': bent[order]} if 'bent' in inspect.signature(fingering.assign_strings).parameters else {}
            ours, _ = fingering.assign_strings(pitch[order], start[order], end[order], tuning, max(24, t.fretCount), **kw)
            rows.append((p.name, t.number, len(notes), int((np.asarray(ours) == string[order]).sum())))
    return rows


def timing_rows(paths: list) -> list:
    "(file, notes, max and mean onset error in grid ticks with the source's metre and tempi, and without)"
    from smidilab.guitarpro import read_gp_report, read_gp
    takes_source = 'metre' in inspect.signature(tablature.write_gp5).parameters
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for p in paths:
            try: notes, rep = read_gp_report(p)
            except Exception: continue
            if not len(notes): continue
            errs = []
            for source in (True, False):
                kw = dict(metre=rep['time_signatures'], tempo=rep['tempo_changes']) if source and takes_source else {}
                w = tablature.write_gp5(notes, Path(d) / 'a.gp5', overwrite=True, **kw)
                back = read_gp(Path(d) / 'a.gp5', track='all')
                a, b = np.sort(notes.onset), np.sort(back.onset)
                e = np.abs(a - b) if len(a) == len(b) else np.array([np.nan])
                errs.append((w['dropped'], float(e.max()), float(e.mean())))
            rows.append((p.name, len(notes), *errs))
    return rows


def main(folder: Path, min_notes: int):
    paths = find_inputs([folder], GP_EXTS)
    rows = fingering_rows(paths, min_notes)
    print('# Fingering: % of notes whose (string, fret) matches the original tab')
    print(f"{'file':32s} {'track':>5s} {'notes':>6s} {'matched':>8s}")
    for name, track, n, hit in rows: print(f'{name[:32]:32s} {track:5d} {n:6d} {100 * hit / n:7.1f}%')
    kept = [r for r in rows if r[2] >= min_notes]
    per_file = [100 * h / n for _, _, n, h in kept]
    print(f"mean over {len(kept)} tracks with >= {min_notes} notes: {np.mean(per_file):.1f}% "
          f"(all notes pooled: {100 * sum(r[3] for r in rows) / sum(r[2] for r in rows):.1f}%, n={sum(r[2] for r in rows)})")
    print('\n# GP5 export: onset error (grid ticks, 1/192 s) after read -> write_gp5 -> read')
    print(f"{'file':32s} {'notes':>6s} {'dropped':>7s} {'max':>6s} {'mean':>6s} | {'no metre/tempo: dropped':>10s} {'max':>6s} {'mean':>6s}")
    for name, n, (d1, mx1, mn1), (d2, mx2, mn2) in timing_rows(paths):
        print(f'{name[:32]:32s} {n:6d} {d1:7d} {mx1:6.1f} {mn1:6.2f} | {d2:10d} {mx2:6.1f} {mn2:6.2f}')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folder', nargs='?', type=Path, default=DEFAULT)
    ap.add_argument('--min-notes', type=int, default=8)
    a = ap.parse_args()
    main(a.folder, a.min_notes)
