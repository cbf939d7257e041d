"""How often the tablature writer's fingering matches the original tab, and the residual timing error of GP5 export.

    python benchmarks/fingering.py                      # the Guitar Pro fixtures in tests/fixtures/guitarpro
    python benchmarks/fingering.py DIR [--min-notes 8] [--lopo]

Fingering: every pitched track of every file is read as written (pyguitarpro, no repeats), its notes are given to
`smidilab.fingering.finger_notes` with the track's own tuning, and the (string, fret) chosen is compared with the
score's. A table per file (notes, % matched) and the mean over files; files with fewer than `--min-notes` notes are
listed but left out of the mean. The weights were fitted on these same files, so `--lopo` also scores each track with
the weights (of those in `FITTED`) that do best on the other pieces: the figure to expect on tabs not seen.

Timing: each file is read (`read_gp_report`), written back with `write_gp5` (its time signatures and tempo changes
passed on, and once without them, as decoded text would be) and read again; the table gives the largest and mean
onset error in grid ticks (1/192 s). Prints tables; asserts nothing.
"""
import argparse, dataclasses, inspect, itertools, re, sys, tempfile
from pathlib import Path
# this folder holds guitarpro_speed.py; keep the script's folder off the path so that `guitarpro` is pyguitarpro
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
import numpy as np
import guitarpro as gp
from tqdm.auto import tqdm
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


def read_tracks(paths: list) -> list:
    "(file, track number, tuning, max fret, and pitch, start, end, written string, bent per note in time order) of every pitched track"
    out = []
    for p in paths:
        try: song = gp.parse(str(p))
        except Exception: continue
        for t in song.tracks:
            if t.isPercussionTrack or t.channel.isPercussionChannel: continue
            tuning, notes = written_notes(t)
            if not notes: continue
            pitch, start, end, string, bent = (np.array(c) for c in zip(*notes))
            order = np.lexsort((-pitch, start))
            out.append((p.name, t.number, tuning, max(24, t.fretCount), *(c[order] for c in (pitch, start, end, string, bent))))
    return out


def matched(track, **knobs) -> int:
    "Notes whose string (and so fret) `finger_notes` chooses as the tab does; `knobs` change the part's default weights"
    _, _, tuning, max_fret, pitch, start, end, string, bent = track
    costs = dataclasses.replace(fingering.hand_costs(tuning, bent), **knobs) if knobs else None
    return int((fingering.finger_notes(pitch, start, end, tuning, max_fret, costs=costs, bent=bent) == string).sum())


def fingering_rows(tracks: list) -> list:
    "(file, track, notes, matched) of every pitched track, with the shipped weights"
    return [(t[0], t[1], len(t[4]), matched(t)) for t in tracks]


# the weights fitted on these fixtures, per kind of part, and the values tried (benchmarks/fingering.py --lopo)
FITTED = {'guitar': dict(fretted=[0, 0.05, 0.1, 0.2], open_change=[0, 0.25, 0.5, 1], thin=[0, 0.02, 0.05, 0.1], move=[0.2, 0.3]),
          'bass': dict(move=[0.3, 0.5, 0.8, 1.2], height=[0.1, 0.2, 0.3], open_high=[0, 0.3, 1], thin=[0, 0.05])}


def part_kind(track) -> str:
    "'bass', 'lead' or 'guitar': which of `fingering`'s weight sets `hand_costs` gives the track"
    costs = fingering.hand_costs(track[2], track[8])
    return 'bass' if costs is fingering.BASS_COSTS else 'lead' if costs is fingering.LEAD_COSTS else 'guitar'


def lopo_rows(tracks: list, rows: list, min_notes: int) -> list:
    """(file, track, kind, % matched in-sample, % matched when the weights are chosen without the piece) per track.

    For each kind of part, every combination in `FITTED` is scored on every track; leaving one piece out (a file name
    without its format and '-m' suffix), the combination with the best mean on the other tracks of that kind scores it.
    Kinds without fitted weights (leads) keep the shipped weights; `rows` are `fingering_rows(tracks)`."""
    tracks = [t for t in tracks if len(t[4]) >= min_notes]
    shipped = {(name, track): 100 * hit / n for name, track, n, hit in rows}
    held = dict(shipped)
    for k, grid in FITTED.items():
        mine = [t for t in tracks if part_kind(t) == k]
        combos = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
        score = np.array([[100 * matched(t, **c) / len(t[4]) for t in mine] for c in tqdm(combos, desc=f'{k} weights')])
        piece = np.array([re.sub(r'(-m)?\.gp\d$', '', t[0]) for t in mine])
        for j, t in enumerate(mine): held[t[:2]] = score[score[:, piece != piece[j]].mean(1).argmax(), j]
    return [(*t[:2], part_kind(t), shipped[t[:2]], held[t[:2]]) for t in tracks]


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


def main(folder: Path, min_notes: int, lopo: bool):
    paths = find_inputs([folder], GP_EXTS)
    tracks = read_tracks(paths)
    rows = fingering_rows(tracks)
    print('# Fingering: % of notes whose (string, fret) matches the original tab')
    print(f"{'file':32s} {'track':>5s} {'notes':>6s} {'matched':>8s}")
    for name, track, n, hit in rows: print(f'{name[:32]:32s} {track:5d} {n:6d} {100 * hit / n:7.1f}%')
    kept = [r for r in rows if r[2] >= min_notes]
    per_file = [100 * h / n for _, _, n, h in kept]
    print(f"mean over {len(kept)} tracks with >= {min_notes} notes: {np.mean(per_file):.1f}% "
          f"(all notes pooled: {100 * sum(r[3] for r in rows) / sum(r[2] for r in rows):.1f}%, n={sum(r[2] for r in rows)})")
    if lopo:
        print('\n# Leave one piece out: the fitted weights chosen without the piece they score')
        print(f"{'file':32s} {'track':>5s} {'kind':>6s} {'in-sample':>9s} {'held out':>8s}")
        lo = lopo_rows(tracks, rows, min_notes)
        for name, track, k, a, b in lo: print(f'{name[:32]:32s} {track:5d} {k:>6s} {a:8.1f}% {b:7.1f}%')
        print(f'mean over {len(lo)} tracks: in-sample {np.mean([r[3] for r in lo]):.1f}%, held out {np.mean([r[4] for r in lo]):.1f}%')
    print('\n# GP5 export: onset error (grid ticks, 1/192 s) after read -> write_gp5 -> read')
    print(f"{'file':32s} {'notes':>6s} {'dropped':>7s} {'max':>6s} {'mean':>6s} | {'no metre/tempo: dropped':>10s} {'max':>6s} {'mean':>6s}")
    for name, n, (d1, mx1, mn1), (d2, mx2, mn2) in timing_rows(paths):
        print(f'{name[:32]:32s} {n:6d} {d1:7d} {mx1:6.1f} {mn1:6.2f} | {d2:10d} {mx2:6.1f} {mn2:6.2f}')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folder', nargs='?', type=Path, default=DEFAULT)
    ap.add_argument('--min-notes', type=int, default=8)
    ap.add_argument('--lopo', action='store_true', help='also check the fitted weights leaving one piece out (about a minute)')
    a = ap.parse_args()
    main(a.folder, a.min_notes, a.lopo)
