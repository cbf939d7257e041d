"The study end to end at toy size (a tiny random model, a few steps per arm), run as its job; and its pieces' contracts."
import json
import numpy as np
import pytest
from smidilab.core import SmidiError, notes_from_dict
from smidilab.codec import text_to_notes
from smidilab.likelihood import BASELINES
from smidilab.study import ARMS, ROWS, QUESTIONS, STAT_KEYS, make_study_config, check_study_folder, budget_order


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    "The toy study run as a job (papermill), as `smidilab run --preset study` runs the real one"
    from smidilab.run import run_job
    out = tmp_path_factory.mktemp('study')
    assert run_job('study', {'out_dir': str(out / 'study')}, out / 'notebooks', preset='toy', log=False) == 0
    return out


def _results(study): return json.loads((study / 'study' / 'results.json').read_text())


def test_every_arm_trained_on_the_same_budget(study):
    results = _results(study)
    budget, arms = results['settings']['budget_tokens'], results['arms']
    assert set(arms) == set(ARMS)
    for name, info in arms.items():
        data = study / 'study' / 'arms' / name / 'data' / 'manifest.json'
        assert info['tokens'] == json.loads(data.read_text())['budget']['tokens'] <= budget
        assert info['tokens'] > budget / 2, (name, info)   # the budget buys examples until the next one would overrun it
    assert arms['augment-0']['examples'] > arms['augment-0']['distinct']   # arm D's x0 run repeats its few pieces
    run = json.loads((study / 'study' / 'arms' / 'scratch' / 'run' / 'run_config.json').read_text())
    assert (run['backend'], run['init']) == ('full', 'random')          # the scratch arm is 17_train's full training


def test_every_row_is_scored_on_the_same_answers(study):
    results = _results(study)
    assert set(results['rows']) == set(ROWS)
    test = json.loads((study / 'study' / 'test_answers.json').read_text())
    notes = sum(len(t['answer']['pitch']) for t in test)
    baselines = json.loads((study / 'study' / 'scores' / 'baselines.json').read_text())
    for name, row in results['rows'].items():
        assert (row['answers'], row['notes'], row['pieces']) == (len(test), notes, len({t['source'] for t in test})), name
        assert row['ci95'][0] <= row['bits_per_note'] <= row['ci95'][1] and row['bits_per_note'] > 0, name
        scores = baselines[name] if name in BASELINES else \
            json.loads((study / 'study' / 'scores' / f"{name.replace(', ', '-').replace(' ', '-')}.json").read_text())
        assert len(scores['bits']) == len(test) and row['pooled'] == pytest.approx(sum(scores['bits']) / notes), name
    assert set(results['questions']) == set(QUESTIONS)


def test_each_arm_is_compared_with_the_best_baseline(study):
    rows, best = _results(study)['rows'], _results(study)['best_baseline']
    assert best == min(BASELINES, key=lambda k: rows[k]['bits_per_note'])
    for name, row in rows.items():
        if name in BASELINES: assert 'minus_best_baseline' not in row; continue
        d = row['minus_best_baseline']
        assert d['bits_per_note'] == pytest.approx(row['bits_per_note'] - rows[best]['bits_per_note'])
        assert d['ci95'][0] <= d['bits_per_note'] <= d['ci95'][1]


def test_the_winning_arm_samples_every_prompt_and_its_statistics_are_compared(study):
    results = _results(study)
    s, cfg = results['samples'], results['settings']
    arm = s['settings']['arm']
    assert arm == min(cfg['arms'], key=lambda a: results['rows'][a]['bits_per_note'])
    instruments = {t['instrument'] for t in json.loads((study / 'study' / 'test_answers.json').read_text())}
    assert len(s['samples']) == cfg['gen_samples'] * cfg['gen_prompts'] * len(instruments)
    for x in s['samples']:   # grammar-constrained: every kept text parses strictly in the arm's dialect
        assert len(text_to_notes(x['text'], dialect=s['dialect'])) == len(notes_from_dict(x['notes'])), x['raw_text']
        assert x['raw_text'].lstrip().startswith(x['text'])
    assert set(s['matched']) == instruments
    for m in s['matched'].values():
        assert m['generated_pieces'] + m['left_out']['generated'] == cfg['gen_samples'] * cfg['gen_prompts']
        assert set(STAT_KEYS) <= set(m['piece_metrics'])


def test_report_and_figure(study):
    md = (study / 'study' / 'study.md').read_text()
    assert ('| row | model | dialect | trained tokens | train min | score min | tokens/note | bits/note [95 % CI] | pooled | '
            '− best baseline [95 % CI] | answers | pieces |') in md
    for name in ROWS: assert f'| {name} |' in md, name
    for q in QUESTIONS: assert f'| {q} |' in md, q
    assert 'toy preset, commit ' in md or 'toy preset, an unknown commit' in md
    assert '## Samples of the winning arm' in md and '| pitch_range |' in md
    assert (study / 'study' / 'study_bits_per_note.png').stat().st_size > 1000
    cells = json.loads((study / 'notebooks' / '24_study.ipynb').read_text())['cells']
    assert not any(o.get('output_type') == 'error' for c in cells for o in c.get('outputs', []))


def test_a_rerun_resumes_without_training_scoring_or_sampling_again(study):
    from smidilab.study import run_study
    out = study / 'study'
    kept = {p: p.stat().st_mtime_ns for p in list(out.glob('arms/*/arm.json')) + list(out.glob('scores/*.json'))
            + list(out.glob('samples/*.json'))}
    assert len(kept) > len(ARMS)
    run_study(make_study_config(out_dir=str(out)))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    with pytest.raises(SmidiError, match=r'holds a study with other settings \(budget_tokens\)'):
        check_study_folder(make_study_config(out_dir=str(out), budget_tokens=10))


def test_budget_order_spends_the_budget_in_shuffled_passes():
    lengths = np.array([30, 50, 70, 90])
    order = budget_order(lengths, 1000, seed=3)
    assert sum(lengths[order]) <= 1000 < sum(lengths[order]) + lengths.max()
    for k in range(0, len(order) - 3, 4): assert sorted(order[k:k + 4]) == [0, 1, 2, 3]   # each pass is a permutation
