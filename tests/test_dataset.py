"Dataset build: splits, token budgets with the real tokenizers, bad inputs, resuming, reproducibility, the job notebook"
import json, multiprocessing, os, shutil, signal, time
from dataclasses import replace
from pathlib import Path
import pytest
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import smidilab.guitarpro
from smidilab.codec import text_to_notes
from smidilab.core import NoteTable, SmidiError
from smidilab.examples import (TokenCounter, build_prompt, build_completion, build_system_prompt, piece_examples,
                               system_prompt_for, tick_ms)
from smidilab.dataset import DatasetConfig, SPLITS, FEATURES, build_dataset
from smidilab.corpus import write_corpus_midi, write_riff_gp5
from smidilab.tokens import load_tokenizer

REPO = Path(__file__).parents[1]
from conftest import LLAMA2, need
PIECES = ['bach/bwv66.6', 'bach/bwv10.7', 'bach/bwv101.7', 'bach/bwv1.6']

@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp('inputs')
    for name in PIECES: write_corpus_midi(name, d/'midi'/f"{name.replace('/', '_')}.mid")
    for i in range(3): write_riff_gp5(i, d/'gp'/f'riff_{i}.gp5')
    return d

def config(inputs, out, **kw):
    base = dict(midi_dirs=[str(inputs/'midi')], gp_dirs=[str(inputs/'gp')], out_dir=str(out), augment=2,
                max_tokens=512, tasks=['continuation', 'infilling', 'accompaniment'], min_notes=8)
    return DatasetConfig(**base | kw)

def rows(out) -> dict:
    from datasets import load_from_disk
    ds = load_from_disk(str(out))
    return {s: ds[s].to_list() for s in SPLITS}

@pytest.fixture(scope='module')
def built(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp('built')/'ds'
    cfg = config(inputs, out)
    return cfg, build_dataset(cfg, progress=False), rows(out)

def test_config_round_trip(tmp_path):
    cfg = DatasetConfig(midi_dirs=['x'], tasks=['infilling'], max_tokens=16384, split=[0.7, 0.2, 0.1])
    assert DatasetConfig.load(cfg.save(tmp_path/'c.json')) == cfg and DatasetConfig.load(cfg.save(tmp_path/'c.json')) != DatasetConfig()

def test_columns_manifest_and_splits(built):
    cfg, manifest, data = built
    assert all(set(r) == set(FEATURES) for s in SPLITS for r in data[s])
    sources = {s: {r['source'] for r in data[s]} for s in SPLITS}
    assert all(sources[s] for s in SPLITS)  # three splits, each with pieces
    assert not (sources['train'] & sources['validation'] or sources['train'] & sources['test']
                or sources['validation'] & sources['test'])
    assert {r['augmentation'] for s in ('validation', 'test') for r in data[s]} == {'none'}
    augmented = [json.loads(r['augmentation']) for r in data['train'] if r['augmentation'] != 'none']
    assert augmented and all({'transpose', 'tempo', 'velocity', 'modulate'} <= set(a) for a in augmented)
    assert {r['task'] for r in data['train']} == {'continuation', 'infilling', 'accompaniment'}
    assert {r['instrument'] for r in data['train']} == {'piano', 'guitar'}
    m = json.loads((Path(cfg.out_dir)/'manifest.json').read_text())
    assert m == json.loads(json.dumps(manifest))
    assert (m['tokenizer'], m['dialect'], m['ticks_per_second'], m['failed']) == ('smollm2', 'paper', 192, [])
    assert m['counts']['train']['examples'] == len(data['train']) and m['settings']['seed'] == 0 and m['commit']
    assert DatasetConfig.load(Path(cfg.out_dir)/'dataset_config.json') == cfg
    assert m['instruments'] == ['guitar', 'piano']
    for r in data['train'] + data['test']:  # generation rebuilds the exact system prompt from the manifest
        assert system_prompt_for(m, r['instrument'], r['task']) in r['prompt']

def test_completion_counts_and_prompt_text(built):
    _, _, data = built
    for r in data['train'][:50]:
        assert len(text_to_notes(r['completion'])) == r['n_notes']
        assert '5.208 ms' in r['prompt'] and r['prompt'].endswith('<|im_start|>assistant\n')
        assert ('metal guitarist' in r['prompt']) == (r['instrument'] == 'guitar')
        assert (':b' in r['completion']) == (r['instrument'] == 'guitar')

def test_prompt_states_the_true_tick_length():
    assert tick_ms(192) == '5.208 ms' and tick_ms(768) == '1.302 ms'
    assert 'ticks of 1.302 ms (768 ticks per second)' in build_system_prompt('piano', ticks_per_second=768)
    assert 'ticks of 5.208 ms (192 ticks per second)' in build_system_prompt('guitar', bends=True)
    assert '5.208' not in build_system_prompt('piano', ticks_per_second=768)

def test_budget_with_smollm2(built):
    cfg, _, data = built
    tok = load_tokenizer('smollm2')
    counts = [len(tok(r['prompt'] + r['completion'])['input_ids']) + 1 for s in SPLITS for r in data[s]]
    assert max(counts) <= cfg.max_tokens
    assert sorted(counts)[len(counts) // 2] > cfg.max_tokens // 2  # examples fill the budget, not a trickle

def test_budget_with_llama2_checked_by_sentencepiece(inputs, tmp_path):
    import sentencepiece as spm
    cfg = config(inputs, tmp_path/'ds', tokenizer=str(need(LLAMA2)), max_tokens=700, augment=1)
    build_dataset(cfg, progress=False)
    sp = spm.SentencePieceProcessor(model_file=str(LLAMA2))
    data = rows(cfg.out_dir)
    for r in data['train']:
        assert r['prompt'].startswith('[INST] <<SYS>>\n') and r['prompt'].endswith(' [/INST]') and r['completion'][0] == ' '
    counts = [len(sp.encode(r['prompt'] + r['completion'])) + 2 for s in SPLITS for r in data[s]]  # + BOS + EOS
    assert max(counts) <= 700 and sorted(counts)[len(counts) // 2] > 350

def test_prompt_tokens_are_a_prefix_of_the_example():
    "TRL masks the prompt by its own tokenization: it must be a prefix of the whole example's"
    for tok in (load_tokenizer('smollm2'), load_tokenizer(str(need(LLAMA2)))):
        system = build_system_prompt('piano')
        prompt = build_prompt(system, 'p60:v80:d96:t96 p62:v80:d96:t96', tok)
        whole = tok(prompt + build_completion('p64:v80:d96:t96', tok))['input_ids']
        assert whole[:len(tok(prompt)['input_ids'])] == tok(prompt)['input_ids']
        assert tok.bos_token is None or not prompt.startswith(tok.bos_token) or tok.bos_token == '<|im_start|>'

def test_other_seed_other_train_same_test(built, inputs, tmp_path):
    "(the same seed giving the same data is shown by the resume test, which rebuilds into a new folder)"
    cfg, _, data = built
    build_dataset(replace(cfg, out_dir=str(tmp_path/'seed1'), seed=1), progress=False)
    other = rows(tmp_path/'seed1')
    assert other['train'] != data['train'] and other['test'] == data['test'] and other['validation'] == data['validation']

def test_bad_files_are_listed_and_the_rest_builds(inputs, tmp_path):
    d = tmp_path/'mixed'
    shutil.copytree(inputs/'midi', d/'midi'); shutil.copytree(inputs/'gp', d/'gp')
    (d/'midi'/'empty.mid').write_bytes(b'')
    (d/'midi'/'corrupt.mid').write_bytes(b'MThd\x00\x00\x00\x06garbage' * 3)
    (d/'midi'/'notes.txt').write_text('not an input')
    (d/'gp'/'truncated.gp5').write_bytes((inputs/'gp'/'riff_0.gp5').read_bytes()[:300])
    cfg = config(d, tmp_path/'ds', augment=0, workers=2)
    cfg.midi_dirs, cfg.gp_dirs = [str(d/'midi')], [str(d/'gp')]
    m = build_dataset(cfg, progress=False)
    failed = {Path(f['path']).name: f['error'] for f in m['failed']}
    assert set(failed) == {'empty.mid', 'corrupt.mid', 'truncated.gp5'} and all(failed.values())
    assert m['inputs'] == len(PIECES) + 3 + 3
    assert sum(c['pieces'] for c in m['counts'].values()) == len(PIECES) + 3

def test_interrupted_build_resumes_to_the_same_result(built, inputs, tmp_path, monkeypatch):
    cfg, _, data = built
    out = tmp_path/'resumed'
    real, calls = smidilab.guitarpro.read_music, []
    def crash_after_three(path, **kw):
        if len(calls) == 3: raise KeyboardInterrupt  # the user pressing Ctrl-C half-way
        calls.append(path); return real(path, **kw)
    monkeypatch.setattr(smidilab.guitarpro, 'read_music', crash_after_three)
    with pytest.raises(KeyboardInterrupt): build_dataset(replace(cfg, out_dir=str(out)), progress=False)
    assert len(list((out/'.cache'/'encoded').glob('*.json'))) == 3 and not (out/'manifest.json').exists()
    def counting(path, **kw): calls.append(path); return real(path, **kw)
    monkeypatch.setattr(smidilab.guitarpro, 'read_music', counting)
    m = build_dataset(replace(cfg, out_dir=str(out)), progress=False)
    assert len(calls) == len(PIECES) + 3  # 3 before the crash, the rest after: nothing read twice
    assert rows(out) == data and m['counts'] == built[1]['counts']

def _slow_build(cfg):
    real = smidilab.guitarpro.read_music
    def slow(path, **kw):
        time.sleep(0.3); return real(path, **kw)
    smidilab.guitarpro.read_music = slow
    build_dataset(cfg, progress=False)

def test_killed_build_resumes_to_the_same_result(built, tmp_path):
    "SIGKILL half-way (no handler runs), then rerun: the cache holds only whole files, the result is the same"
    cfg, manifest, data = built
    out = tmp_path/'killed'
    child = multiprocessing.get_context('fork').Process(target=_slow_build, args=(replace(cfg, out_dir=str(out)),))
    child.start()
    deadline = time.time() + 30
    while len(list((out/'.cache'/'encoded').glob('*.json'))) < 3 and time.time() < deadline: time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL); child.join()
    cached = list((out/'.cache'/'encoded').glob('*.json'))
    assert 3 <= len(cached) < len(PIECES) + 3 and not (out/'manifest.json').exists()
    assert all(json.loads(p.read_text())['pitch'] for p in cached)  # whole files only
    m = build_dataset(replace(cfg, out_dir=str(out)), progress=False)
    assert rows(out) == data and m['counts'] == manifest['counts']

def test_job_notebook_runs_under_papermill(tmp_path):
    from smidilab.run import run_job
    out = tmp_path/'ds'
    params = dict(out_dir=str(out), augment=1, max_tokens=512, embedded_pieces=PIECES[:2], embedded_riffs=2,
                  tasks=['continuation', 'accompaniment'], workers=2)
    assert run_job('prepare', params, tmp_path, log=False) == 0
    m = json.loads((out/'manifest.json').read_text())
    assert m['settings']['embedded_pieces'] == PIECES[:2] and m['inputs'] == 4 and m['failed'] == [] and m['commit']
    data = rows(out)
    assert {r['task'] for r in data['train']} == {'continuation', 'accompaniment'}
    assert data['validation'] == [] and data['test']  # two pieces per instrument: an empty split, saved loadable

def test_compact_dialect_fits_and_parses(inputs, tmp_path):
    cfg = config(inputs, tmp_path/'ds', dialect='compact', augment=0, max_tokens=600)
    build_dataset(cfg, progress=False)
    tok, data = load_tokenizer('smollm2'), rows(cfg.out_dir)
    for r in data['train'] + data['test']:
        assert len(tok(r['prompt'] + r['completion'])['input_ids']) + 1 <= 600
        assert len(text_to_notes(r['completion'], dialect='compact')) == r['n_notes'] and ':' not in r['completion']
        assert 'without separators' in r['prompt']

def test_field_counts_equal_whole_word_counts():
    tok = load_tokenizer(str(need(LLAMA2)))
    words = [f'p{p}:v{v}:d{d}:t{t}:b{b}' for p, v, d, t, b in
             zip(range(0, 128, 3), range(1, 128, 3), range(0, 40000, 931), range(0, 90000, 2111), range(0, 46))]
    words += ['p60v80d96t96b34', 'p61d5', 'GAP']
    fields, whole = TokenCounter(tok), TokenCounter(tok)
    whole.additive = False  # forces one tokenizer call per word
    assert fields.words(words).tolist() == whole.words(words).tolist() and fields.additive
    assert int(fields.words(words[:10]).sum()) == len(tok(' '.join(words[:10]), add_special_tokens=False)['input_ids'])

def test_bends_off_strips_bend_fields():
    riff = NoteTable(pitch=[40, 52, 55] * 8, velocity=[100] * 24, onset=[i * 48 for i in range(24)], duration=[48] * 24,
                     bend=[23, 38, 34] * 8, instrument='guitar', source='gp/riff.gp5')
    counter = TokenCounter(load_tokenizer('smollm2'))
    on = piece_examples(riff, 'none', DatasetConfig(min_notes=8), counter)
    off = piece_examples(riff, 'none', DatasetConfig(min_notes=8, bends=False), counter)
    assert on and off and all(':b' in r['completion'] and 'pitch bend' in r['prompt'] for r in on)
    assert all(':b' not in r['completion'] + r['prompt'].split('user')[-1] and 'pitch bend' not in r['prompt'] for r in off)

def test_template_without_system_role_gets_the_system_text_in_the_user_turn():
    class NoSystem:  # the behaviour of Mistral's and Gemma's templates
        chat_template, bos_token, bos_token_id = 'x', None, None
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            if any(m['role'] == 'system' for m in messages): raise ValueError('System role not supported')
            return ''.join(f"<user>{m['content']}</user>" for m in messages) + '<bot>'
    assert build_prompt('SYS', 'p60:v80:d96:t96', NoSystem()) == '<user>SYS\n\np60:v80:d96:t96</user><bot>'

def _without(m: dict, *keys) -> dict: return {k: v for k, v in m.items() if k not in keys}

def test_shards_merge_into_the_single_build(built, tmp_path):
    "Three shards (built with two workers each, in any order), merged: the rows and manifest of the single build"
    cfg, manifest, data = built
    shards = [tmp_path/f'part{i}' for i in range(3)]
    for i in (2, 0, 1): build_dataset(replace(cfg, out_dir=str(shards[i]), shard=f'{i}/3', workers=2), progress=False)
    parts = [json.loads((d/'manifest.json').read_text()) for d in shards]
    assert sum(p['inputs'] for p in parts) == len(PIECES) + 3 and all(p['inputs'] for p in parts)
    merged = build_dataset(DatasetConfig(merge=[str(d) for d in shards[::-1]], out_dir=str(tmp_path/'merged')), progress=False)
    assert rows(tmp_path/'merged') == data
    assert _without(merged, 'settings', 'commit') == _without(manifest, 'settings', 'commit')
    assert DatasetConfig.load(tmp_path/'merged'/'dataset_config.json').merge == [str(d) for d in shards]

def test_merge_refuses_shards_of_different_builds(built, inputs, tmp_path):
    cfg, _, _ = built
    a = build_dataset(replace(cfg, out_dir=str(tmp_path/'a'), shard='0/2', augment=0), progress=False)
    build_dataset(replace(cfg, out_dir=str(tmp_path/'b'), shard='1/2'), progress=False)
    with pytest.raises(SmidiError, match="differs from .* in augment"):
        build_dataset(DatasetConfig(merge=[str(tmp_path/'a'), str(tmp_path/'b')], out_dir=str(tmp_path/'m')), progress=False)
    build_dataset(replace(cfg, out_dir=str(tmp_path/'c'), shard='1/2', augment=0, midi_dirs=[str(inputs/'midi')], gp_dirs=[]),
                  progress=False)
    with pytest.raises(SmidiError, match='other inputs'):
        build_dataset(DatasetConfig(merge=[str(tmp_path/'a'), str(tmp_path/'c')], out_dir=str(tmp_path/'m')), progress=False)
    assert a['shard']['count'] == 2 and not (tmp_path/'m').exists()

def test_only_bad_inputs_fail_with_the_inputs_and_reasons(tmp_path, capsys):
    "prepare with nothing usable stops in the job with 'no usable input' and each file's reason (it used to be an IndexError)"
    from smidilab.run import run_job
    bad = tmp_path/'bad'; bad.mkdir()
    (bad/'empty.mid').write_bytes(b'')
    (bad/'noise.mid').write_bytes(b'MThd\x00\x00\x00\x06garbage')
    code = run_job('prepare', dict(midi_dirs=[str(bad)], out_dir=str(tmp_path/'ds')), tmp_path, log=False)
    err = capsys.readouterr().err
    assert code == 1 and 'no usable input' in err and 'IndexError' not in err, err
    nb = json.loads((tmp_path/'15_dataset.ipynb').read_text())
    shown = ''.join(o.get('evalue', '') for c in nb['cells'] for o in c.get('outputs', []))
    assert 'empty.mid' in shown and 'noise.mid' in shown and 'none of the 2 input file(s) converted' in shown
    assert not (tmp_path/'ds'/'manifest.json').exists()

def test_cli_shards_and_merge_with_relative_paths(inputs, tmp_path, monkeypatch):
    "`smidilab prepare --shard I/N` on two 'machines', then `--merge` of relative folders, equals `prepare` in one go"
    from smidilab.cli import main
    monkeypatch.chdir(tmp_path)
    common = ['--midi', str(inputs/'midi'), '--gp', str(inputs/'gp'), '--augment', '1', '--max-tokens', '512']
    assert main(['prepare', *common, '-o', 'whole']) == 0
    for i in range(2): assert main(['prepare', *common, '--shard', f'{i}/2', '-o', f'part{i}', '-p', 'workers', '2']) == 0
    assert main(['prepare', '--merge', 'part1', 'part0', '-o', 'merged']) == 0
    whole, merged = (json.loads((tmp_path/d/'manifest.json').read_text()) for d in ('whole', 'merged'))
    assert rows(tmp_path/'merged') == rows(tmp_path/'whole') and merged['counts'] == whole['counts']
    assert merged['settings']['merge'] == [str(tmp_path/'part0'), str(tmp_path/'part1')]
    assert main(['prepare', '--shard', '2/2', '-o', 'bad']) == 2  # a usage error before any kernel starts

def test_a_build_holds_one_batch_and_a_few_pieces(tmp_path):
    "What keeps memory flat: at most workers x ahead inputs in flight, and one batch of rows per split before it is written"
    from smidilab.core import map_bounded
    from smidilab.dataset import DatasetWriter
    pulled = []
    def items():
        for i in range(30): pulled.append(i); yield -i
    for k, r in enumerate(map_bounded(abs, items(), workers=2, ahead=2)):
        assert r == k and len(pulled) <= k + 1 + 2 * 2
    row = dict(prompt='p' * 1000, completion=' c', source='s', instrument='piano', augmentation='none', n_notes=1,
               n_prompt_notes=1, task='continuation')
    with DatasetWriter(tmp_path/'w', shard_bytes=20_000, batch_bytes=5_000) as w:
        for _ in range(100):
            w.write('train', [row])
            assert sum(len(r['prompt']) for r in w.rows['train']) < 5_000
        m = w.finish({})
    from datasets import load_from_disk
    assert len(load_from_disk(str(tmp_path/'w'))['train']) == m['counts']['train']['examples'] == 100
    assert len(list((tmp_path/'w'/'train').glob('*.arrow'))) == 5  # a new file every 20 kB of text
