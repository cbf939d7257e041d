"The main job end to end: `smidilab run --preset tiny` into a temporary folder (issue: the newcomer's first command)."
import json, subprocess, sys, wave
from pathlib import Path
import mido
import pytest


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('run') / 'tiny'
    exe = Path(sys.executable).parent / 'smidilab'
    r = subprocess.run([str(exe), 'run', '--preset', 'tiny', '-o', str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def test_every_stage_ran_and_kept_its_notebook(run_dir):
    status = json.loads((run_dir / 'status.json').read_text())
    assert list(status['done']) == ['prepare', 'train', 'generate', 'evaluate', 'figures']
    for nb in ['15_dataset', '17_train', '19_generate', '22_evaluate', '23_figures']:
        cells = json.loads((run_dir / 'notebooks' / f'{nb}.ipynb').read_text())['cells']
        assert not any(o.get('output_type') == 'error' for c in cells for o in c.get('outputs', []))


def test_artefacts_reopen(run_dir):
    from datasets import load_from_disk
    from smidilab.codec import text_to_notes
    import guitarpro
    ds = load_from_disk(str(run_dir / 'data'))
    assert set(ds) == {'train', 'validation', 'test'} and len(ds['train']) > 0
    assert (run_dir / 'run' / 'adapter' / 'adapter_model.safetensors').exists()
    assert json.loads((run_dir / 'run' / 'run_config.json').read_text())['preset'] == 'tiny'
    gen = json.loads((run_dir / 'generated' / 'generation.json').read_text())
    instruments = {s['instrument'] for s in gen['samples']}
    assert instruments == {'piano', 'guitar'}, instruments
    for k, s in enumerate(gen['samples']):
        text_to_notes((run_dir / 'generated' / f'sample_{k}.txt').read_text())   # constrained: parses strictly
        mido.MidiFile(run_dir / 'generated' / f'sample_{k}.mid')
        assert (run_dir / 'generated' / f'sample_{k}.png').stat().st_size > 0
        if s['instrument'] == 'guitar': guitarpro.parse(str(run_dir / 'generated' / f'sample_{k}.gp5'))
        wav = run_dir / 'generated' / f'sample_{k}.wav'
        if wav.exists(): wave.open(str(wav)).getnframes()
    metrics = json.loads((run_dir / 'evaluation' / 'metrics.json').read_text())
    assert {'finetuned', 'base', 'ngram'} <= set(metrics['likelihood'])
    assert (run_dir / 'figures' / 'piano_roll.png').exists() and (run_dir / 'figures' / 'loss_curves.png').exists()


def test_summary_states_the_headline_numbers(run_dir):
    summary = (run_dir / 'summary.md').read_text()
    for row in ['examples train / validation / test', 'notes in the dataset', 'tokens per answer note', 'training minutes',
                'training loss first → last', 'validation loss before → after', 'notes generated', 'share of valid notes', 'bits per note on test answers']:
        assert f'| {row} |' in summary, row
    assert '(finetuned)' in summary and '(base)' in summary and '(ngram)' in summary
    assert '[generation.json](generated/generation.json)' in summary


def test_rerun_resumes_and_skips_finished_stages(run_dir):
    exe = Path(sys.executable).parent / 'smidilab'
    r = subprocess.run([str(exe), 'run', '--preset', 'tiny', '-o', str(run_dir)], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.count('done earlier, skipped') == 5


def test_a_failing_stage_stops_the_run_and_names_the_cell(tmp_path):
    exe = Path(sys.executable).parent / 'smidilab'
    r = subprocess.run([str(exe), 'run', '--preset', 'tiny', '--midi', str(tmp_path / 'missing'), '-o', str(tmp_path / 'o')],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert 'stage 15_dataset failed in cell' in r.stderr and 'missing' in r.stderr
    assert json.loads((tmp_path / 'o' / 'status.json').read_text() if (tmp_path / 'o' / 'status.json').exists()
                      else '{"done": {}}')['done'] == {}
    assert (tmp_path / 'o' / 'notebooks' / '15_dataset.ipynb').exists()
