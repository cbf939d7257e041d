"""The encode/decode contract (00_core, "The contract of a conversion run") under hostile input.

A hypothesis test builds random trees of inputs (MIDI, Guitar Pro, text; duplicates, name collisions, broken files,
odd names) and runs `smidilab encode`, then `decode`, into random output locations (outside, equal to or inside an
input folder). It checks that no input byte changes, that every file a run creates is an output listed in report.json,
that the exit status follows the contract, and that nothing raises. Below it, one test per defect listed in issue 20,
each of which failed on the code before the fix, and the kill test."""
import contextlib, hashlib, io, json, os, signal, subprocess, sys, time
from pathlib import Path
import mido
import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st, HealthCheck
from smidilab.cli import main
from smidilab.core import NoteTable, TEMP_MARK
from smidilab.codec import notes_to_text
from smidilab.midi import read_midi
from smidilab.midiwrite import midi_bytes
from conftest import FIXTURES

GP5 = FIXTURES / 'guitarpro' / 'pyguitarpro' / 'Effects.gp5'   # 47 notes, one dead note
SMIDILAB = str(Path(sys.executable).parent / 'smidilab')


def run(*args) -> tuple[int, str]:
    "Exit status and printed text (stdout, then stderr) of `smidilab ARGS` run in this process (an exception fails the test)"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = main([str(a) for a in args])
        except SystemExit as e: code = e.code  # argparse's own usage errors
    return code, out.getvalue() + err.getvalue()


def cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([SMIDILAB, *map(str, args)], capture_output=True, text=True, env=env, **kw)


def report_of(folder: Path) -> dict:
    return json.loads((folder / 'report.json').read_text())


def piece(n: int = 8, seed: int = 0, **meta) -> NoteTable:
    rng = np.random.default_rng(seed)
    return NoteTable(pitch=rng.integers(40, 90, n), velocity=rng.integers(1, 128, n), onset=np.sort(rng.integers(0, 50 * n, n)),
                     duration=rng.integers(0, 200, n), **meta)


def snapshot(root: Path) -> dict:
    "Every file and link under `root` with a hash of its bytes (a link: its target)"
    out = {}
    for folder, subs, files in os.walk(root):
        for f in files + [s for s in subs if os.path.islink(os.path.join(folder, s))]:
            p = os.path.join(folder, f)
            out[p] = os.readlink(p) if os.path.islink(p) else hashlib.sha1(Path(p).read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------- the property: random trees, random output folders

NAMES = st.sampled_from(['x', 'X', 'song one', 'émigré', 'a.b', '-dash', os.fsdecode(b'caf\xe9'), 'esc\x1b[31m', 'y' * 200])
KINDS = st.sampled_from(['midi', 'midi', 'gp', 'text', 'text_bad', 'empty', 'junk', 'dangling'])
EXTS = {'midi': ['.mid', '.MID', '.midi'], 'gp': ['.gp5'], 'text': ['.txt'], 'text_bad': ['.txt'], 'empty': ['.mid', '.txt'],
        'junk': ['.mid', '.gp5', '.txt'], 'dangling': ['.mid', '.txt']}
ENTRIES = st.lists(st.tuples(st.sampled_from(['', 'a', 'b', 'a/deep']), NAMES, KINDS, st.integers(0, 2)), min_size=1, max_size=7)


def write_entry(root: Path, folder: str, name: str, kind: str, k: int):
    path = root / folder / (name + EXTS[kind][k % len(EXTS[kind])])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink(): return
    data = {'midi': lambda: midi_bytes(piece(seed=k)), 'gp': lambda: GP5.read_bytes(),
            'text': lambda: notes_to_text(piece(seed=k)).encode(), 'text_bad': lambda: b'p60:v80:d96:t96 p61:v0 zz\xff p62:v80:d1:t0',
            'empty': lambda: b'', 'junk': lambda: bytes(range(256)) * 3}
    if kind == 'dangling': os.symlink(root / 'nowhere', path)
    else: path.write_bytes(data[kind]())


def out_folder(tmp: Path, where: str) -> Path:
    return {'outside': tmp / 'out', 'equal': tmp / 'in', 'inside': tmp / 'in' / 'out', 'sub': tmp / 'in' / 'a' / 'o'}[where]


def check_run(tmp: Path, before: dict, code: int, printed: str, out: Path, command: str):
    "The contract, checked on one finished run"
    after = snapshot(tmp)
    assert 'Traceback' not in printed
    assert all(after.get(p) == h for p, h in before.items() if not p.startswith(str(out / 'report.json'))), \
        'an existing file was changed'
    if code == 2:                                   # refused: before anything was written
        assert after == before, printed
        return
    report = report_of(out)
    assert report['command'] == f'smidilab {command}'
    listed = {str(out / o) for r in report['inputs'].values() for o in r['outputs']}
    made = set(after) - set(before) - {str(out / 'report.json')}
    assert made == listed, 'a file was written that report.json does not list, or the other way round'
    assert all(os.path.exists(p) for p in listed)
    assert not any(TEMP_MARK in p for p in after)
    assert report['ok'] == all(r['ok'] for r in report['inputs'].values())
    assert code == (0 if report['ok'] else 1), printed


@given(ENTRIES, st.sampled_from(['outside', 'equal', 'inside', 'sub']), st.sampled_from(['fresh', 'under', 'input', 'same']),
       st.sampled_from(['folder', 'files']))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_random_trees_keep_the_contract(tmp_path_factory, entries, enc_where, dec_where, named):
    tmp = tmp_path_factory.mktemp('tree')
    for e in entries: write_entry(tmp / 'in', *e)
    inputs = [tmp / 'in'] if named == 'folder' else sorted((tmp / 'in').rglob('*'), key=str)
    inputs = [p for p in inputs if p.is_symlink() or not p.is_dir()] or [tmp / 'in']
    out = out_folder(tmp, enc_where)
    before = snapshot(tmp)
    code, printed = run('encode', *inputs, '-o', out)
    event(f'encode exit {code}')
    check_run(tmp, before, code, printed, out, 'encode')
    if code == 2: return
    mid = {'fresh': tmp / 'mid', 'under': out / 'mid', 'input': tmp / 'in', 'same': out}[dec_where]
    before = snapshot(tmp)
    code, printed = run('decode', out, tmp / 'in', '-o', mid)      # encode's texts and the tree's own .txt files
    event(f'decode exit {code}')
    check_run(tmp, before, code, printed, mid, 'decode')


# ---------------------------------------------------------------- 1. outputs never overwrite the user's files

def test_1_decode_into_the_input_folder_keeps_the_original_midi(tmp_path):
    d = tmp_path / 'd'; d.mkdir()
    mf = mido.MidiFile(type=0, ticks_per_beat=480)
    mf.tracks.append(mido.MidiTrack([mido.Message('note_on', note=60, velocity=80), mido.Message('note_off', note=60, time=480)]))
    mf.save(d / 'x.mid')
    original = (d / 'x.mid').read_bytes()
    assert run('encode', d, '-o', d)[0] == 0
    encode_report = (d / 'report.json').read_bytes()
    code, printed = run('decode', d, '-o', d)
    assert code == 2 and 'x.mid' in printed
    assert (d / 'x.mid').read_bytes() == original and (d / 'report.json').read_bytes() == encode_report


def test_1_a_rerun_replaces_only_what_it_made(tmp_path):
    (tmp_path / 'gen.txt').write_text('p60:v80:d96:t96')
    assert run('decode', tmp_path / 'gen.txt', '-o', tmp_path / 'o', '--to', 'mid,gp5')[0] == 0
    (tmp_path / 'gen.txt').write_text('p60:v80:d96:t96 p64:v80:d96:t96')
    assert run('decode', tmp_path / 'gen.txt', '-o', tmp_path / 'o', '--to', 'mid,gp5')[0] == 0   # its own files: replaced
    assert len(read_midi(tmp_path / 'o' / 'gen.mid')) == 2
    import guitarpro
    song = guitarpro.parse(str(tmp_path / 'o' / 'gen.gp5'))
    assert sum(len(b.notes) for m in song.tracks[0].measures for v in m.voices for b in v.beats) == 2  # not a stale .gp5
    (tmp_path / 'o2').mkdir(); (tmp_path / 'o2' / 'gen.gp5').write_bytes(b'the user\'s own tablature')
    assert run('decode', tmp_path / 'gen.txt', '-o', tmp_path / 'o2', '--to', 'mid,gp5')[0] == 2
    assert (tmp_path / 'o2' / 'gen.gp5').read_bytes() == b'the user\'s own tablature'
    assert not (tmp_path / 'o2' / 'gen.mid').exists()


# ---------------------------------------------------------------- 2. one output per input

def test_2_decode_mirrors_folders(tmp_path):
    for sub, text in (('a', 'p60:v80:d96:t96'), ('b', 'p72:v80:d96:t96')):
        (tmp_path / 'in' / sub).mkdir(parents=True); (tmp_path / 'in' / sub / 'x.txt').write_text(text)
    assert run('decode', tmp_path / 'in', '-o', tmp_path / 'out')[0] == 0
    assert [read_midi(tmp_path / 'out' / s / 'x.mid').pitch.tolist() for s in 'ab'] == [[60], [72]]


def test_2_same_names_are_not_lost(tmp_path):
    for sub in 'ab':
        (tmp_path / sub).mkdir(); (tmp_path / sub / 'x.mid').write_bytes(midi_bytes(piece(seed=ord(sub))))
    (tmp_path / 'a' / 'x.gp5').write_bytes(GP5.read_bytes())
    assert run('encode', tmp_path / 'a' / 'x.mid', tmp_path / 'b' / 'x.mid', tmp_path / 'a' / 'x.gp5', '-o', tmp_path / 'out')[0] == 0
    report = report_of(tmp_path / 'out')
    outputs = [o for r in report['inputs'].values() for o in r['outputs']]
    assert sorted(outputs) == ['a/x.gp5.txt', 'a/x.mid.txt', 'b/x.txt'] and report['summary']['outputs'] == 3


def test_2_a_rerun_inside_the_input_never_takes_its_outputs_for_inputs(tmp_path):
    d = tmp_path / 'd'; d.mkdir()
    (d / 'x.mid').write_bytes(midi_bytes(piece()))
    assert run('encode', d, '-o', d / 'out')[0] == 0
    assert run('decode', d / 'out', '-o', d / 'out' / 'mid')[0] == 0   # d/out/mid/x.mid: an output, not a new input
    assert run('encode', d, '-o', d / 'out')[0] == 0
    assert list(report_of(d / 'out')['inputs']) == [str(d / 'x.mid')]


# ---------------------------------------------------------------- 3. never "ok" when it was not

def test_3_dropped_tokens_are_not_ok(tmp_path):
    (tmp_path / 'g.txt').write_text('p60:v80:d96:t96 garbage p62:v80:d96:t96')
    code, printed = run('decode', tmp_path / 'g.txt', '-o', tmp_path / 'o')
    assert code == 1 and printed.startswith('decoded 0 of 1 input(s) cleanly')
    assert report_of(tmp_path / 'o')['inputs'][str(tmp_path / 'g.txt')]['ok'] is False


def test_3_an_output_not_written_is_not_ok(tmp_path):
    "20 bent notes at once need more than 15 MIDI channels: no .mid, and the exit status says so"
    (tmp_path / 'c.txt').write_text(' '.join(f'p{40 + i}:v80:d96:t0:b30' for i in range(20)))
    code, printed = run('decode', tmp_path / 'c.txt', '-o', tmp_path / 'o')
    assert code == 1 and 'more than 15' in printed and not (tmp_path / 'o' / 'c.mid').exists()


@pytest.mark.parametrize('bad', [['--ticks-per-second', '0'], ['--ticks-per-second', '65536'], ['--bend-range', 'nan'],
                                 ['--bend-range', '0.333'], ['--bend-range', 'inf'], ['--workers', '-1']])
def test_3_impossible_options_are_usage_errors(tmp_path, bad):
    (tmp_path / 'a.txt').write_text('p60:v80:d96:t96')
    assert run('decode', tmp_path / 'a.txt', '-o', tmp_path / 'o', *bad)[0] == 2
    assert run('encode', tmp_path, '-o', tmp_path / 'o', *bad)[0] == 2
    assert not (tmp_path / 'o').exists()


def test_3_tablature_drops_reach_the_report(tmp_path):
    "The GP5 writer's report (its `dropped` and `shortened` keys) goes into report.json and the exit status"
    cluster = ' '.join(f'p{p}:v80:d96:t0' for p in range(69, 39, -1))[:-2] + 't96'  # 30 notes at once: too many strings
    (tmp_path / 'riff.txt').write_text(cluster)
    code, _ = run('decode', tmp_path / 'riff.txt', '-o', tmp_path / 'o', '--to', 'gp5', '--instrument', 'guitar')
    rec = report_of(tmp_path / 'o')['inputs'][str(tmp_path / 'riff.txt')]
    dropped = rec['formats']['gp5']['dropped']
    assert code == 1 and rec['ok'] is False and dropped > 0 and 'shortened' in rec['formats']['gp5']
    assert f'gp5: {dropped} note(s)' in rec['error'] and rec['outputs'] == ['riff.gp5']


# ---------------------------------------------------------------- 4. output errors are per-file failures

def test_4_a_folder_in_the_way_fails_one_file_and_the_batch_goes_on(tmp_path):
    for n in 'ab': (tmp_path / 'in' / f'{n}.txt').parent.mkdir(exist_ok=True); (tmp_path / 'in' / f'{n}.txt').write_text('p60:v80:d96:t96')
    (tmp_path / 'o' / 'a.mid').mkdir(parents=True)
    code, printed = run('decode', tmp_path / 'in', '-o', tmp_path / 'o')
    report = report_of(tmp_path / 'o')
    assert code == 1 and report['summary']['ok'] == 1 and (tmp_path / 'o' / 'b.mid').is_file()
    assert 'Is a directory' in report['inputs'][str(tmp_path / 'in' / 'a.txt')]['error']


def test_4_a_full_disk_fails_files_not_the_run(tmp_path, monkeypatch):
    import errno, smidilab.convert as convert
    for n in 'ab': (tmp_path / 'in').mkdir(exist_ok=True); (tmp_path / 'in' / f'{n}.mid').write_bytes(midi_bytes(piece()))
    real = convert.atomic_write
    def full(path, data, overwrite=True):
        if Path(path).name in ('b.txt', 'report.json'): raise OSError(errno.ENOSPC, 'No space left on device')
        return real(path, data, overwrite)
    monkeypatch.setattr(convert, 'atomic_write', full)
    monkeypatch.setattr(convert, 'write_json', lambda path, obj: full(path, ''))
    code, printed = run('encode', tmp_path / 'in', '-o', tmp_path / 'o')
    assert code == 1 and (tmp_path / 'o' / 'a.txt').is_file() and not (tmp_path / 'o' / 'report.json').exists()
    assert 'FAILED' in printed and 'No space left on device' in printed and 'report.json could not be written' in printed
    journal = [json.loads(l) for l in (tmp_path / 'o' / 'report.partial.jsonl').read_text().splitlines()]
    assert [r['ok'] for r in journal if 'ok' in r] == [True, False]   # the journal still says what happened


def test_4_long_names_and_an_uncreatable_output_folder(tmp_path):
    long = tmp_path / ('n' * 240 + '.txt')
    long.write_text('p60:v80:d96:t96')
    assert run('decode', long, '-o', tmp_path / 'o')[0] == 0            # its temporary file's name still fits
    (tmp_path / 'file').write_text('')
    code, printed = run('decode', long, '-o', tmp_path / 'file' / 'o')
    assert code == 2 and printed.count('\n') == 1 and 'cannot create the output folder' in printed


def test_4_a_tree_deeper_than_path_max_is_reported(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(20):  # 20 × 230 characters: past PATH_MAX (4096)
        os.mkdir('d' * 230, dir_fd=fd); nxt = os.open('d' * 230, os.O_RDONLY, dir_fd=fd); os.close(fd); fd = nxt
    with open(os.open('deep.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd), 'w') as f: f.write('p60:v80:d96:t96')
    os.close(fd)
    (tmp_path / 'ok.txt').write_text('p60:v80:d96:t96')
    code, printed = run('decode', tmp_path, '-o', tmp_path.parent / (tmp_path.name + '_out'))
    report = report_of(tmp_path.parent / (tmp_path.name + '_out'))
    assert code == 1 and report['summary']['ok'] == 1 and report['summary']['failed'] == 1, printed
    assert 'Traceback' not in printed


def test_4_names_that_are_not_utf8_print(tmp_path):
    bad = tmp_path / os.fsdecode(b'caf\xe9\x1b[2J.mid')
    bad.write_bytes(b'not midi')
    r = cli('encode', tmp_path, '-o', tmp_path / 'o', env=os.environ | {'PYTHONIOENCODING': 'utf-8'})
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'caf\\xe9\\x1b[2J.mid' in r.stdout and '\x1b' not in r.stdout + r.stderr


# ---------------------------------------------------------------- 5. encode and decode agree on limits

def test_5_encode_cuts_what_decode_would_refuse(tmp_path):
    mf = mido.MidiFile(ticks_per_beat=1)
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage('set_tempo', tempo=0xFFFFFF),  # 16.7 s per tick
                                     mido.Message('note_on', note=60, velocity=80), mido.Message('note_off', note=60, time=1000),
                                     mido.Message('note_on', note=62, velocity=80, time=2**27), mido.Message('note_off', note=62, time=1)]))
    mf.save(tmp_path / 'far.mid')
    assert run('encode', tmp_path / 'far.mid', '-o', tmp_path / 't')[0] == 0
    rec = report_of(tmp_path / 't')['inputs'][str(tmp_path / 'far.mid')]
    assert rec['repairs'] == {'durations_clamped': 1, 'gaps_clamped': 1}
    assert run('decode', tmp_path / 't', '-o', tmp_path / 'm', '--strict')[0] == 0
    assert report_of(tmp_path / 'm')['summary']['notes_out'] == 2


# ---------------------------------------------------------------- 6, 7. the last gap, and the gap of a dropped token

def test_6_decode_then_encode_keeps_the_last_gap(tmp_path):
    (tmp_path / 'a.txt').write_text('p60:v80:d96:t500')
    assert run('decode', tmp_path / 'a.txt', '-o', tmp_path / 'm')[0] == 0
    assert run('encode', tmp_path / 'm', '-o', tmp_path / 't')[0] == 0
    assert (tmp_path / 't' / 'a.txt').read_text() == 'p60:v80:d96:t500\n'


def test_7_a_dropped_token_keeps_its_gap(tmp_path):
    (tmp_path / 'a.txt').write_text('p60:v80:d96:t192 p62:v80:d96:t192:b99 p64:v80:d96:t192')
    assert run('decode', tmp_path / 'a.txt', '-o', tmp_path / 'm')[0] == 1
    notes = read_midi(tmp_path / 'm' / 'a.mid')
    assert (notes.pitch.tolist(), notes.onset.tolist(), notes.end) == ([60, 64], [0, 384], 576)


# ---------------------------------------------------------------- 8. repairs are in the report

def test_8_repairs_are_counted_per_file_and_summed(tmp_path):
    mf = mido.MidiFile(ticks_per_beat=96)
    mf.tracks.append(mido.MidiTrack([
        mido.Message('note_on', note=60, velocity=80), mido.Message('note_off', note=61, time=10),   # a stray note-off
        mido.Message('note_on', channel=9, note=36, velocity=90),                                     # a drum note
        mido.Message('control_change', control=101, value=0), mido.Message('control_change', control=100, value=0),
        mido.Message('control_change', control=6, value=12),                                          # ±12 semitones …
        mido.Message('pitchwheel', pitch=8191, time=5),                                               # … past ±4: clipped
        mido.Message('note_on', note=64, velocity=80, time=5)]))                                      # never closed
    mf.save(tmp_path / 'rough.mid')
    (tmp_path / 'Effects.gp5').write_bytes(GP5.read_bytes())
    code, printed = run('encode', tmp_path, '-o', tmp_path / 'o')
    report = report_of(tmp_path / 'o')
    assert report['inputs'][str(tmp_path / 'rough.mid')]['repairs'] == {
        'dangling_notes_closed': 2, 'stray_note_offs_ignored': 1, 'drum_notes_skipped': 1, 'bend_values_clipped': 1}
    assert report['inputs'][str(tmp_path / 'Effects.gp5')]['repairs']['dead_notes_skipped'] == 1
    assert report['summary']['repairs']['dead_notes_skipped'] == 1 and report['summary']['repairs']['drum_notes_skipped'] == 1
    assert code == 0 and 'repairs: ' in printed


# ---------------------------------------------------------------- 9. interruption, the fallback, bounded reports

def encode_folder(tmp_path: Path, n: int) -> Path:
    "n MIDI files of 20,000 notes each: long enough to kill a run half-way"
    (tmp_path / 'in').mkdir()
    for i in range(n): (tmp_path / 'in' / f'{i:03d}.mid').write_bytes(midi_bytes(piece(20_000, seed=i)))
    return tmp_path / 'in'


def wait_for_outputs(out: Path, k: int, proc, timeout: float = 120):
    t = time.time()
    while len(list(out.glob('*.txt'))) < k and proc.poll() is None and time.time() - t < timeout: time.sleep(0.05)
    assert proc.poll() is None, 'the run finished before it could be killed'


@pytest.mark.parametrize('sig, workers', [(signal.SIGKILL, 1), (signal.SIGTERM, 2)])
def test_9_a_killed_encode_keeps_finished_files_and_a_rerun_finishes(tmp_path, sig, workers):
    src, out, n = encode_folder(tmp_path, 24), tmp_path / 'out', 24
    proc = subprocess.Popen([SMIDILAB, 'encode', src, '-o', out, '--workers', str(workers)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    wait_for_outputs(out, 4, proc)
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
    proc.wait(timeout=60)
    done = sorted(out.glob('*.txt'))
    assert 4 <= len(done) < n and not (out / 'report.json').exists()
    for t in done:  # every finished file is complete
        assert t.read_text() == notes_to_text(read_midi(src / (t.stem + '.mid'))) + '\n'
    temps = [p for p in out.iterdir() if TEMP_MARK in p.name]
    if sig == signal.SIGTERM: assert proc.returncode == 128 + sig and not temps
    assert run('encode', src, '-o', out)[0] == 0             # the rerun may replace the killed run's files
    assert len(list(out.glob('*.txt'))) == n and not [p for p in out.iterdir() if TEMP_MARK in p.name]
    assert report_of(out)['summary']['ok'] == n and not (out / 'report.partial.jsonl').exists()


def test_9_the_mido_fallback_is_reported(tmp_path):
    mf = mido.MidiFile()
    mf.tracks.append(mido.MidiTrack([mido.Message('note_on', note=60, velocity=80), mido.Message('songpos', pos=1),
                                     mido.Message('note_off', note=60, time=480)]))
    mf.save(tmp_path / 'odd.mid')
    code, printed = run('encode', tmp_path / 'odd.mid', '-o', tmp_path / 'o')
    rec = report_of(tmp_path / 'o')['inputs'][str(tmp_path / 'odd.mid')]
    assert code == 0 and rec['reader'] == {'engine': 'mido', 'fallback': 'system message 0xF2'}
    assert '1 file(s) read by mido' in printed


def test_9_reports_stay_small_for_junk(tmp_path):
    rng = np.random.default_rng(0)
    junk = ''.join(rng.choice(list('pvdtb:0123456789 xyz\u00e9'), 300_000))
    (tmp_path / 'junk.txt').write_text(junk)
    (tmp_path / 'bin.txt').write_bytes(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    assert run('decode', tmp_path, '-o', tmp_path / 'o')[0] == 1
    report = report_of(tmp_path / 'o')
    rec = report['inputs'][str(tmp_path / 'junk.txt')]
    assert rec['dropped']['count'] == rec['notes_in'] - rec['notes_out'] > 1000
    assert len(rec['dropped']['first']) == 20 and max(len(d['token']) for d in rec['dropped']['first']) <= 80
    assert 'binary data' in report['inputs'][str(tmp_path / 'bin.txt')]['error']
    assert (tmp_path / 'o' / 'report.json').stat().st_size < 20_000


def test_9_temporary_files_left_by_a_killed_run_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    (tmp_path / 'o').mkdir(); stale = tmp_path / 'o' / f'.a.mid{TEMP_MARK}{dead}-abcd1234.tmp'; stale.write_bytes(b'half')
    (tmp_path / 'a.txt').write_text('p60:v80:d96:t96')
    assert run('decode', tmp_path / 'a.txt', '-o', tmp_path / 'o')[0] == 0 and not stale.exists()


# ---------------------------------------------------------------- 10. smaller ones

def test_10_byte_order_mark_and_zero_width_space(tmp_path):
    (tmp_path / 'a.txt').write_bytes('\ufeffp60:v80:d96:t0\u200bp64:v80:d96:t96'.encode())
    assert run('decode', tmp_path / 'a.txt', '-o', tmp_path / 'o')[0] == 0
    assert read_midi(tmp_path / 'o' / 'a.mid').pitch.tolist() == [60, 64]


def test_10_escape_sequences_never_reach_the_terminal(tmp_path):
    version = b'\x1b[31mFICHIER GUITAR PRO v5.00'
    (tmp_path / 'evil.gp5').write_bytes(bytes([len(version)]) + version.ljust(30, b' ') + bytes(100))
    (tmp_path / 'name\x1b]0;pwned\x07.mid').write_bytes(b'MThd')
    r = cli('encode', tmp_path, '-o', tmp_path / 'o')
    assert r.returncode == 1 and '\x1b' not in r.stdout + r.stderr and '\\x1b[31mFICHIER' in r.stdout


def test_10_a_dangling_link_fails_alone(tmp_path):
    (tmp_path / 'good.txt').write_text('p60:v80:d96:t96')
    os.symlink(tmp_path / 'gone.txt', tmp_path / 'link.txt')
    code, printed = run('decode', tmp_path / 'link.txt', tmp_path / 'good.txt', '-o', tmp_path / 'o')
    report = report_of(tmp_path / 'o')
    assert code == 1 and report['summary']['ok'] == 1
    assert 'dangling symbolic link' in report['inputs'][str(tmp_path / 'link.txt')]['error']


def test_10_symlinked_folders_are_followed_and_loops_end(tmp_path):
    (tmp_path / 'elsewhere').mkdir(); (tmp_path / 'elsewhere' / 'y.txt').write_text('p60:v80:d96:t96')
    (tmp_path / 'in').mkdir(); (tmp_path / 'in' / 'x.txt').write_text('p62:v80:d96:t96')
    os.symlink(tmp_path / 'elsewhere', tmp_path / 'in' / 'linked')
    os.symlink(tmp_path / 'in', tmp_path / 'elsewhere' / 'loop')
    assert run('decode', tmp_path / 'in', '-o', tmp_path / 'o')[0] == 0
    assert sorted(report_of(tmp_path / 'o')['inputs']) == [str(tmp_path / 'in' / 'linked' / 'y.txt'), str(tmp_path / 'in' / 'x.txt')]
    assert (tmp_path / 'o' / 'linked' / 'y.mid').is_file()
