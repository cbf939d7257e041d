"""alphaTab, an independent Guitar Pro reader (npm `@coderline/alphatab`, run in Node), against ours.

For every fixture, every structure file of `test_guitarpro`, and every GP5 that `write_gp5` writes from them, per
pitched track: the note count, the bent-note count and the onsets must equal alphaTab's, under the conventions listed in
nbs/05_guitarpro.ipynb ("Checked against alphaTab"). The test installs alphaTab into a cache folder outside the
repository (~/.cache/smidilab, or $SMIDILAB_CACHE) and skips, saying why, only when node/npm or the npm registry are
absent. One Node process reads all files.
"""
import json, os, shutil, subprocess
from collections import Counter
from fractions import Fraction
from pathlib import Path
import pytest
from smidilab.core import NO_BEND
from smidilab.guitarpro import read_gp_report
from smidilab.tablature import write_gp5
from conftest import LOGS
from test_guitarpro import SCORES, EXPECTED_FAILURES, write_structures, many_parts_text, triplets_over_a_bass
from smidilab.codec import text_to_notes

ALPHATAB = '1.8.4'
HERE = Path(__file__).resolve().parent / 'alphatab'
CACHE = Path(os.environ.get('SMIDILAB_CACHE', Path.home() / '.cache' / 'smidilab')) / f'alphatab-{ALPHATAB}'
OFFLINE = ('ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET', 'network', 'offline')
GRACE, BENT, TIE_AFTER_GAP = 1, 2, 4  # row flags of read_gp.js
GP_FIXTURES = [p for p in SCORES if p.suffix.lower() != '.gpx' and p.suffix.lower() != '.gp']


def install_alphatab() -> dict:
    "The environment that lets node find alphaTab, installing it into the cache folder first if needed"
    node, npm = shutil.which('node'), shutil.which('npm')
    if node is None or npm is None: pytest.skip('node or npm is not installed: the alphaTab oracle cannot run')
    if not (CACHE / 'node_modules' / '@coderline' / 'alphatab' / 'package.json').exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / 'package.json', CACHE / 'package.json')
        r = subprocess.run([npm, 'install', '--no-audit', '--no-fund', '--prefix', str(CACHE)], capture_output=True,
                           text=True, timeout=600)
        if r.returncode and any(k in r.stderr for k in OFFLINE):
            pytest.skip(f'the npm registry is unreachable, alphaTab cannot be installed: {r.stderr.strip()[-300:]}')
        assert r.returncode == 0, r.stderr
    return dict(os.environ, NODE_PATH=str(CACHE / 'node_modules'))


def read_with_alphatab(paths: list) -> dict:
    "alphaTab's reading of every file of `paths` (one Node process), by path"
    env = install_alphatab()
    r = subprocess.run(['node', str(HERE / 'read_gp.js'), *map(str, paths)], capture_output=True, text=True, env=env,
                       timeout=600, check=True)
    return {d['file']: d for d in map(json.loads, r.stdout.splitlines())}


def grid_ticks(rows: list, tempos: list, ticks_per_second: int = 192) -> list:
    "alphaTab rows [tick, pitch, flags] with the tick turned into our grid through alphaTab's own tempo map"
    changes = sorted(dict(map(tuple, tempos)).items()) or [(0, 120)]
    out = []
    for tick, pitch, flags in rows:
        seconds, t0, bpm = Fraction(0), min(0, tick), changes[0][1]
        for t, b in changes:
            if t > tick: break
            seconds, t0, bpm = seconds + Fraction(t - t0) * 60 / (960 * bpm), t, b
        seconds += Fraction(tick - t0) * 60 / (960 * bpm)
        out.append((int(seconds * ticks_per_second + Fraction(1, 2)) if seconds >= 0 else
                    -int(-seconds * ticks_per_second + Fraction(1, 2)), pitch, flags))
    return out


def disagreements(path, theirs: dict) -> list[str]:
    "What differs between alphaTab and us, track by track, under the listed conventions"
    out = []
    for track in theirs['tracks']:
        if track['percussion']: continue
        notes, report = read_gp_report(path, track=track['index'] + 1)
        rows = grid_ticks(track['rows'], theirs['tempos'], notes.ticks_per_second)
        ours = Counter(zip((notes.onset + report['leading_silence_ticks']).tolist(), notes.pitch.tolist()))
        plain = Counter((t, p) for t, p, f in rows if not f & GRACE)
        left, missing = ours - plain, plain - ours
        for t, p, f in rows:  # alphaTab makes every grace note a 32nd: match by pitch within half a second before
            if f & GRACE:
                near = [k for k in left if k[1] == p and t - notes.ticks_per_second // 2 <= k[0] <= t + 12]
                if near: left[near[0]] -= 1; left = +left
                else: missing[(t, p)] += 1
        bent = int((notes.bend != NO_BEND).sum())
        expected_bent = sum(f & BENT > 0 for _, _, f in rows)
        if report['version'].startswith('3'): expected_bent += report['counts'].get('tremolo_bar_notes', 0)
        name = f"{Path(path).name} track {track['index'] + 1}"
        if len(notes) != len(rows): out.append(f'{name}: {len(notes)} notes, alphaTab {len(rows)}')
        if bent != expected_bent: out.append(f'{name}: {bent} bent notes, alphaTab {expected_bent}')
        if left or missing: out.append(f'{name}: onsets only ours {sorted(left.elements())[:5]}, '
                                       f'only alphaTab {sorted(missing.elements())[:5]}')
    return out


@pytest.fixture(scope='module')
def written(tmp_path_factory) -> list[Path]:
    "Every structure file, and a GP5 written by `write_gp5` from each fixture and structure as we read it"
    folder = tmp_path_factory.mktemp('alphatab')
    sources = [p for p in GP_FIXTURES if p.name not in EXPECTED_FAILURES] + list(write_structures(folder).values())
    out = [p for p in sources if p.parent == folder]
    for i, p in enumerate(sources):
        notes, _ = read_gp_report(p)
        if len(notes): write_gp5(notes, folder / f'{i:03d}_{p.stem}.gp5'); out.append(folder / f'{i:03d}_{p.stem}.gp5')
    write_gp5(text_to_notes(many_parts_text(), instrument='other'), folder / 'many_parts.gp5')  # tracks, voices
    write_gp5(triplets_over_a_bass(), folder / 'triplets.gp5')
    return out + [folder / 'many_parts.gp5', folder / 'triplets.gp5']


@pytest.fixture(scope='module')
def alphatab(written) -> dict:
    return read_with_alphatab(GP_FIXTURES + written)


def test_fixtures_agree_with_alphatab(alphatab):
    problems, failed = [], []
    for p in GP_FIXTURES:
        theirs = alphatab[str(p)]
        if not theirs['ok']: failed.append(p.name); continue
        problems += disagreements(p, theirs)
    if problems:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / 'alphatab_fixtures.txt').write_text('\n'.join(problems))
    assert not problems, problems[:10]
    assert failed == ['chord-fail.gp3']  # alphaTab refuses it too (a beat count of 512)


def test_structures_and_written_gp5_agree_with_alphatab(written, alphatab):
    problems = [d for p in written for d in disagreements(p, alphatab[str(p)])]
    assert all(alphatab[str(p)]['ok'] for p in written)
    assert not problems, problems[:10]
    assert len(written) > 60


def test_alphatab_plays_the_issue_example_as_we_do(written, alphatab):
    "The 5-measure example with two alternate endings: alphaTab's order is its own unit test's expectation"
    endings = next(p for p in written if p.name == 'endings.gp5')
    assert alphatab[str(endings)]['played'] == [0, 1, 0, 2, 3, 0, 1, 0, 4]
