"The study end to end at toy size (a tiny random model, a few steps per arm), run as its job; and its pieces' contracts."
import json
from pathlib import Path
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from smidilab.core import SmidiError
from smidilab.codec import notes_to_text, DECOMPOSED_PHRASE
from smidilab.study import (ARMS, ROWS, QUESTIONS, make_study_config, check_study_folder, budget_order, bits_interval,
                            paired_difference, decomposed_accepts)
from test_codec import note_tables


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    "The toy study run as a job (papermill), as `smidilab run --preset study` runs the real one"
    from smidilab.run import run_job
    out = tmp_path_factory.mktemp('study')
    assert run_job('study', {'out_dir': str(out / 'study')}, out / 'notebooks', preset='toy', log=False) == 0
    return out


def test_every_arm_trained_on_the_same_budget(study):
    results = json.loads((study / 'study' / 'results.json').read_text())
    budget, arms = results['settings']['budget_tokens'], results['arms']
    assert set(arms) == set(ARMS)
    for name, info in arms.items():
        data = study / 'study' / 'arms' / name / 'data' / 'manifest.json'
        assert info['tokens'] == json.loads(data.read_text())['budget']['tokens'] <= budget
        assert info['tokens'] > budget / 2, (name, info)   # the budget buys examples until the next one would overrun it
    assert arms['augment-0']['examples'] > arms['augment-0']['distinct']   # arm D's x0 run repeats its few pieces


def test_every_row_is_scored_on_the_same_answers(study):
    results = json.loads((study / 'study' / 'results.json').read_text())
    assert set(results['rows']) == set(ROWS)
    test = json.loads((study / 'study' / 'test_answers.json').read_text())
    notes = sum(len(t['answer']['pitch']) for t in test)
    for name, row in results['rows'].items():
        assert (row['answers'], row['notes'], row['pieces']) == (len(test), notes, len({t['source'] for t in test})), name
        assert row['low'] <= row['bits_per_note'] <= row['high'] and row['bits_per_note'] > 0, name
        scores = study / 'study' / 'scores' / f"{name.replace(', ', '-').replace(' ', '-')}.json"
        assert name == 'n-gram' or len(json.loads(scores.read_text())['bits']) == len(test)
    assert set(results['questions']) == set(QUESTIONS)


def test_report_and_figure(study):
    md = (study / 'study' / 'study.md').read_text()
    assert '| row | model | dialect | trained tokens | train min | score min | tokens/note | bits/note [95 % CI] | answers | pieces |' in md
    for name in ROWS: assert f'| {name} |' in md, name
    for q in QUESTIONS: assert f'| {q} |' in md, q
    assert 'toy preset, commit ' in md or 'toy preset, an unknown commit' in md
    assert (study / 'study' / 'study_bits_per_note.png').stat().st_size > 1000
    cells = json.loads((study / 'notebooks' / '17_study.ipynb').read_text())['cells']
    assert not any(o.get('output_type') == 'error' for c in cells for o in c.get('outputs', []))


def test_a_rerun_resumes_without_training_or_scoring_again(study):
    from smidilab.study import run_study
    out = study / 'study'
    kept = {p: p.stat().st_mtime_ns for p in list(out.glob('arms/*/arm.json')) + list(out.glob('scores/*.json'))}
    run_study(make_study_config(out_dir=str(out)))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    with pytest.raises(SmidiError, match=r'holds a study with other settings \(budget_tokens\)'):
        check_study_folder(make_study_config(out_dir=str(out), budget_tokens=10))


def test_budget_order_spends_the_budget_in_shuffled_passes():
    lengths = np.array([30, 50, 70, 90])
    order = budget_order(lengths, 1000, seed=3)
    assert sum(lengths[order]) <= 1000 < sum(lengths[order]) + lengths.max()
    for k in range(0, len(order) - 3, 4): assert sorted(order[k:k + 4]) == [0, 1, 2, 3]   # each pass is a permutation


def test_piece_bootstrap_against_a_hand_computed_case():
    "Two pieces: every resample is AA, AB, BA or BB, so the interval lies between the pieces' own bits per note"
    bits, notes, pieces = [10.0, 30.0, 80.0], [10, 10, 20], ['a', 'a', 'b']   # a: 2 bits/note, b: 4 bits/note
    r = bits_interval(bits, notes, pieces, boot=500)
    assert r['bits_per_note'] == pytest.approx(120 / 40)
    assert r['low'] == pytest.approx(2.0) and r['high'] == pytest.approx(4.0)
    d = paired_difference([b * 2 for b in bits], bits, notes, pieces, boot=500)
    assert d['difference'] == pytest.approx(3.0) and d['low'] == pytest.approx(2.0) and d['high'] == pytest.approx(4.0)


@given(note_tables(max_notes=50))
@settings(max_examples=100, deadline=None)
def test_grammar_accepts_every_decomposed_answer_and_no_count_mismatch(notes):
    if not len(notes): return
    bends = notes.instrument == 'guitar'
    text = notes_to_text(notes, bends=bends, dialect='decomposed')
    assert decomposed_accepts(text, bends=bends)
    lines = text.split('\n')
    for k, line in enumerate(lines):
        items = line.split(' ')
        if k % (4 if bends else 3) == 0 and len(items) == DECOMPOSED_PHRASE: continue  # a full rhythm line cannot grow
        longer = lines[:k] + [line + ' ' + items[-1]] + lines[k + 1:]
        assert not decomposed_accepts('\n'.join(longer), bends=bends), (k, longer)
        if len(items) > 1 and k % (4 if bends else 3):
            shorter = lines[:k] + [' '.join(items[:-1])] + lines[k + 1:]
            assert not decomposed_accepts('\n'.join(shorter), bends=bends), (k, shorter)
