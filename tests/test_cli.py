"End-to-end tests of the `smidilab` command line: files in, files and exit codes out."
import json, os, subprocess, sys
from pathlib import Path
import mido
import pytest
from smidilab.codec import text_to_notes
from conftest import FIXTURES, SEED, need

def smidilab(*args, cwd=None):
    return subprocess.run([str(Path(sys.executable).parent / 'smidilab'), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    "A folder mixing good MIDI (music21 chorales), a Guitar Pro file, and bad inputs"
    from music21 import corpus as m21
    d = tmp_path_factory.mktemp('corpus')
    for p in m21.getComposer('bach')[:2]:
        (d / 'bach').mkdir(exist_ok=True)
        m21.parse(p).write('midi', fp=str(d / 'bach' / f'{Path(p).stem}.mid'))
    (d / 'bad').mkdir()
    (d / 'bad' / 'empty.mid').write_bytes(b'')
    good = (d / 'bach').glob('*.mid').__next__().read_bytes()
    (d / 'bad' / 'truncated.mid').write_bytes(good[:len(good) // 2])
    (d / 'bad' / 'random.mid').write_bytes(os.urandom(300))
    (d / 'bad' / 'text.mid').write_text('this is not a MIDI file\n')
    gp = FIXTURES / 'guitarpro' / 'pyguitarpro' / 'Effects.gp5'
    if gp.exists(): (d / 'Effects.gp5').write_bytes(gp.read_bytes())
    (d / 'bad' / 'song.gpx').write_bytes(b'BCFZ')   # Guitar Pro 6: found, and reported as unsupported
    return d


def test_encode_reports_bad_files_and_converts_the_rest(corpus, tmp_path):
    r = smidilab('encode', corpus, '-o', tmp_path / 'out')
    assert r.returncode == 1, r.stderr
    assert 'Traceback' not in r.stderr + r.stdout
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    inputs = report['inputs']
    bad = {Path(k).name: v for k, v in inputs.items() if not v['ok']}
    assert set(bad) == {'empty.mid', 'truncated.mid', 'random.mid', 'text.mid', 'song.gpx'}
    assert 'not supported' in bad['song.gpx']['error']
    assert all(v['error'] and not v['outputs'] for v in bad.values())
    good = [k for k, v in inputs.items() if v['ok']]
    assert len(good) == len(inputs) - 5 == report['summary']['ok']
    for k in good:
        out = tmp_path / 'out' / inputs[k]['outputs'][0]
        assert out.is_relative_to(tmp_path / 'out')
        assert len(text_to_notes(out.read_text())) == inputs[k]['notes_out'] > 0
    assert (tmp_path / 'out' / 'bach').is_dir()      # input folders mirrored
    assert r.stdout.splitlines()[0] == f'encoded {len(good)} of {len(inputs)} input(s) cleanly; 5 not (see report.json)'


def test_encode_all_good_exits_zero_and_decode_round_trips(corpus, tmp_path):
    assert smidilab('encode', corpus / 'bach', '-o', tmp_path / 'txt').returncode == 0
    r = smidilab('decode', tmp_path / 'txt', '-o', tmp_path / 'mid', '--to', 'mid', '--strict')
    assert r.returncode == 0, r.stderr
    mids = sorted((tmp_path / 'mid').glob('*.mid'))
    assert len(mids) == 2 and all(mido.MidiFile(m).length > 0 for m in mids)
    assert smidilab('encode', tmp_path / 'mid', '-o', tmp_path / 'txt2').returncode == 0
    for t in (tmp_path / 'txt').rglob('*.txt'):
        assert (tmp_path / 'txt2' / t.name).read_text() == t.read_text()


def test_decode_lenient_reports_dropped_tokens_strict_fails(tmp_path):
    "Lenient decoding writes what it could and says what it dropped, and that is not a clean exit"
    (tmp_path / 'gen.txt').write_text('p60:v80:d96:t96 p61:vX p62:v80:d96:t96')
    r = smidilab('decode', tmp_path / 'gen.txt', '-o', tmp_path / 'lenient')
    assert r.returncode == 1, r.stderr
    entry = json.loads((tmp_path / 'lenient' / 'report.json').read_text())['inputs'][str(tmp_path / 'gen.txt')]
    assert (entry['ok'], entry['notes_in'], entry['notes_out'], entry['outputs']) == (False, 3, 2, ['gen.mid'])
    assert entry['dropped']['first'][0]['token'] == 'p61:vX' and entry['dropped']['count'] == 1
    assert (tmp_path / 'lenient' / 'gen.mid').exists()
    r = smidilab('decode', tmp_path / 'gen.txt', '-o', tmp_path / 'strict', '--strict')
    assert r.returncode == 1 and 'token 1' in r.stdout
    assert not (tmp_path / 'strict' / 'gen.mid').exists()


def test_usage_errors_exit_2(tmp_path):
    (tmp_path / 'a.txt').write_text('p60:v80:d96:t96')
    assert smidilab('encode').returncode == 2
    assert smidilab('encode', tmp_path / 'missing', '-o', tmp_path).returncode == 2
    assert smidilab('decode', tmp_path, '-o', tmp_path, '--to', 'mp3').returncode == 2
    assert smidilab('frobnicate').returncode == 2
    for bad in (['--ticks-per-second', '0'], ['--ticks-per-second', '65536'], ['--bend-range', 'nan'],
                ['--bend-range', '0.333'], ['--bend-range', '-1'], ['--workers', '0'], ['--ticks-per-second', '1.5']):
        r = smidilab('decode', tmp_path / 'a.txt', '-o', tmp_path / 'o', *bad)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, (bad, r.stderr)
    assert smidilab('encode', tmp_path, '-o', tmp_path / 'o', '--track', '0').returncode == 2
    (tmp_path / 'empty').mkdir()
    r = smidilab('encode', tmp_path / 'empty', '-o', tmp_path / 'o')
    assert r.returncode == 2 and 'no input files found' in r.stderr
    assert not (tmp_path / 'o').exists()                 # refused before anything was written


def test_reference_data_grid(tmp_path):
    "--ticks-per-second 768 reads the study's data grid: a response decodes to a MIDI of the right length in seconds"
    row = json.loads(need(SEED / 'test.jsonl').read_text().splitlines()[0])
    (tmp_path / 'ref.txt').write_text(row['response'])
    assert smidilab('decode', tmp_path / 'ref.txt', '-o', tmp_path / 'o', '--ticks-per-second', '768', '--strict').returncode == 0
    notes = text_to_notes(row['response'], ticks_per_second=768)
    assert abs(mido.MidiFile(tmp_path / 'o' / 'ref.mid').length - max(notes.end, notes.last_offset) / 768) < 0.01


def test_train_rejects_a_misspelt_parameter(tmp_path):
    "A misspelt setting is a usage error before any kernel starts, naming the closest setting"
    r = smidilab('train', '--preset', 'tiny', '-p', 'lora_rank', '4', '-p', 'out_dir', tmp_path / 'run')
    assert r.returncode == 2, r.stderr
    assert "unknown TrainConfig field 'lora_rank' (did you mean 'lora_r'?)" in r.stderr
    assert not (tmp_path / 'run' / '17_train.ipynb').exists()     # refused before the notebook ran
