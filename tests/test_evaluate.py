"Evaluation metrics on hand-made pieces with known answers, the n-gram baseline, memorisation, bits per note, the job"
import json, math, os
from pathlib import Path
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

os.environ['HF_HUB_OFFLINE'] = '1'
from smidilab.core import NoteTable
from smidilab.codec import parse_text
from smidilab.evaluate import *
from smidilab.generate import load_generator
from smidilab.train import TrainConfig

from conftest import SEED, need
NBS = Path(__file__).parents[1]/'nbs'


def notes(pitch, onset, duration, **kw):
    n = len(pitch)
    return NoteTable(pitch=pitch, velocity=kw.pop('velocity', [80]*n), onset=onset, duration=duration, **kw)

C_MAJOR = notes([60, 62, 64, 65, 67, 69, 71, 72], np.arange(8)*96, [96]*8)


def test_c_major_scale():
    s = piece_statistics(C_MAJOR)
    assert (s['pitch_in_scale_rate'], s['scale_consistency'], s['n_pitch_classes_used']) == (1.0, 1.0, 7)
    assert (s['polyphony'], s['polyphony_rate'], s['pitch_range'], s['n_pitches_used']) == (1.0, 0.0, 12, 8)
    assert s['pitch_entropy'] == pytest.approx(3.0) and s['pitch_class_entropy'] == pytest.approx(2.75)
    assert (s['empty_beat_rate'], s['groove_consistency']) == (0.0, 1.0)
    assert (s['bent_share'], math.isnan(s['bend_semitones'])) == (0.0, True)


def test_scale_shifted_out_of_key():
    fsharp = notes(C_MAJOR.pitch + 6, C_MAJOR.onset, C_MAJOR.duration)  # the F#-major scale
    assert pitch_in_scale_rate(fsharp) == pytest.approx(2/8)  # only B (71) and F (77, E#) are in C major
    assert scale_consistency(fsharp) == 1.0


@pytest.mark.parametrize('size', [1, 2, 3, 5])
def test_chord_polyphony_is_its_size(size):
    chord = notes(list(range(60, 60 + 2*size, 2)), [0]*size, [96]*size)
    assert polyphony(chord) == size
    assert polyphony_rate(chord) == (1.0 if size >= 2 else 0.0)


def test_empty_beats_and_groove():
    two = notes([60, 62], [0, 4*96], [48, 48])  # sounds in beats 0 and 4 of 5
    assert empty_beat_rate(two, beat_ticks(192, 120)) == pytest.approx(3/5)
    assert empty_beat_rate(two, beat_ticks(192, 60)) == pytest.approx(1/3)  # 192-tick beats: 0 and 2 of 3
    varied = notes([60]*5, [0, 96, 192, 288, 384], [96]*4 + [384])
    assert groove_consistency(varied, 96.0) == pytest.approx(1 - 3/16)


def test_bends():
    guitar = notes([64, 67, 69, 71], [0, 96, 192, 288], [96]*4, bend=[23, 31, 15, 23], instrument='guitar')
    s = bend_statistics(guitar)
    assert s['bent_share'] == 0.5
    assert s['bend_semitones'] == pytest.approx(0.25)  # b31 = 8704, b15 = 7680: ±512/8192 of ±4 semitones
    assert set_histograms([guitar])['bend'][31] == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 200), st.integers(0, 60)), min_size=1, max_size=30))
def test_polyphony_equals_dense_piano_roll(rows):
    p, on, d = map(list, zip(*rows))
    piece = notes(p, on, d)
    roll = np.zeros((piece.last_offset, 128), bool)
    for a, b, c in rows: roll[b:b + c, a] = True
    count = roll.sum(1)
    if (count > 0).any(): assert polyphony(piece) == pytest.approx(count[count > 0].mean())
    else: assert math.isnan(polyphony(piece))
    if len(roll): assert polyphony_rate(piece) == pytest.approx((count >= 2).mean())


def test_distances():
    assert overlap_distance([3, 1, 0], [6, 2, 0]) == 0.0 and kl_divergence([3, 1, 0], [6, 2, 0]) == pytest.approx(0)
    assert overlap_distance([1, 0], [0, 1]) == 1.0
    near, far = mgeval_distance([1, 2, 3, 4, 5], [2, 3, 4]), mgeval_distance([1, 2, 3, 4, 5], [40, 50])
    assert near['overlap_distance'] < far['overlap_distance'] == 1.0


def test_repetition_rate():
    loop = [(60 + i % 3, 80, 10, 10, 23) for i in range(30)]
    assert repetition_rate(loop, 4) == pytest.approx(1 - 3/27)
    assert repetition_rate(note_symbols(C_MAJOR), 2) == 0.0


@pytest.fixture(scope='module')
def seed_pieces():
    rows = [json.loads(l) for l in need(SEED/'test.jsonl').read_text().splitlines()[:60]]
    return [note_symbols(parse_text(r['response'], ticks_per_second=768)[0]) for r in rows]


@pytest.mark.parametrize('length', [1, 7, 40])
def test_memorisation_finds_inserted_excerpt(seed_pieces, length):
    alien = [(0, 1, 3, 5, 23)] * 3  # pitch 0 occurs in no training piece
    sample = alien + seed_pieces[11][20:20 + length] + alien + seed_pieces[2][:3]
    vocab = {}
    corpus = symbol_ids(seed_pieces, vocab)
    assert longest_common_runs(symbol_ids([sample, alien], vocab), corpus) == [max(length, 3), 0]


def test_ngram_bits_approach_zero_on_repetition():
    phrase = note_symbols(C_MAJOR)
    bits = [ngram_bits_per_note(fit_ngram([phrase * n], 3), [phrase * n])['bits_per_note'] for n in (5, 50, 500)]
    assert bits[0] > bits[1] > bits[2] > 0 and bits[2] < 0.005


def test_ngram_on_real_data(seed_pieces):
    model = fit_ngram(seed_pieces[:50], order=3)
    held_out = ngram_bits_per_note(model, seed_pieces[50:])
    seen = ngram_bits_per_note(model, seed_pieces[:5])
    assert 0 < seen['bits_per_note'] < held_out['bits_per_note'] < 60 and held_out['notes'] > 100
    sample = sample_ngram(model, np.random.default_rng(0), 50)
    assert 0 < len(sample) <= 50 and all(0 <= s[0] <= 127 and 1 <= s[1] <= 127 for s in sample)
    assert len(symbols_to_notes(sample, ticks_per_second=768)) == len(sample)


def test_ngram_distribution_sums_to_one(seed_pieces):
    "Seen notes + end symbol + the unseen notes' share (the escape mass times the spelling mass left) = 1"
    from smidilab.evaluate import _spelling_prob
    model, seen = fit_ngram(seed_pieces[:10], order=3), {s for p in seed_pieces[:10] for s in p}
    left = 1 - sum(_spelling_prob(model['spelling'], s) for s in seen)
    for context in ([START, START], [START, seed_pieces[0][0]], seed_pieces[3][5:7], [(1, 2, 3, 4, 5)] * 2):
        escape = 1.0
        for k in range(3):
            entry = model['counts'][k].get(tuple(context[len(context) - k:]) if k else ())
            if entry is None: break
            escape *= entry[2] / (entry[1] + entry[2])
        total = sum(ngram_prob(model, context, s) for s in seen | {END})
        assert total + escape * left == pytest.approx(1.0, abs=1e-9)


@pytest.fixture(scope='module')
def tiny():
    import torch
    torch.set_num_threads(2)
    gen = load_generator('tiny')
    return gen.model, gen.tokenizer


def test_bits_per_note_tiny_llama_equals_hand_computation(tiny):
    import torch
    model, tok = tiny
    prompt, answer = '<|im_start|>user\np60:v80:d96:t96<|im_end|>\n<|im_start|>assistant\n', 'p62:v80:d96:t96 p64:v80:d96:t0'
    bits, n_tokens = completion_bits(model, tok, [prompt, prompt * 3], [answer, answer + ' p65:v1:d1:t1'],
                                     max_batch_tokens=10**6, progress=False)
    ids_p = tok(prompt)['input_ids']
    ids = ids_p + tok(answer)['input_ids'] + [tok.eos_token_id]
    with torch.no_grad(): logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    hand = -sum(logp[i - 1, ids[i]].item() for i in range(len(ids_p), len(ids))) / math.log(2)
    assert np.isfinite(bits).all()
    assert bits[0] == pytest.approx(hand, rel=1e-4)
    assert n_tokens[0] == len(ids) - len(ids_p)
    summary = likelihood_summary(bits[:1], n_tokens[:1], [2])
    assert summary['bits_per_note'] == pytest.approx(hand / 2)


def test_notebook_runs_under_papermill_with_a_finetuned_run(tmp_path, tiny):
    "The job notebook on tiny inputs with a run folder: base and fine-tuned scores equal those of the models saved"
    import copy, torch
    from smidilab.run import run_job
    from peft import LoraConfig, get_peft_model
    model, tok = tiny
    gen_dir, data_dir = write_demo_inputs(tmp_path/'in', need(SEED).parent)
    test = load_reference(data_dir)[0]['test'][:2]
    run, out = tmp_path/'run', tmp_path/'out'
    base = copy.deepcopy(model)
    with torch.no_grad(): base.model.norm.weight.mul_(3.0)  # not the seed-0 tiny model: the run's own base must be used
    base.save_pretrained(run/'base')  # the run folder as 12_train writes it for the tiny preset
    expected_base = completion_bits(base, tok, test['prompt'], test['completion'], progress=False)[0].sum()
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=['q_proj', 'v_proj']))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if 'lora_B' in name: p.normal_(std=0.5)  # a trained-looking adapter (B = 0 would change nothing)
    expected_tuned = completion_bits(lora, tok, test['prompt'], test['completion'], progress=False)[0].sum()
    lora.save_pretrained(run/'adapter'); base.config.save_pretrained(run/'adapter'); tok.save_pretrained(run/'tokenizer')
    TrainConfig(base_model='tiny', out_dir=str(run)).save(run/'run_config.json')
    assert run_job('evaluate', {'generated_dir': str(gen_dir), 'reference': str(data_dir), 'out_dir': str(out),
                                'model': str(run), 'max_examples': 2, 'ngram_samples': 2, 'ngram_sample_notes': 16},
                   tmp_path, log=False) == 0
    m = json.loads((out/'metrics.json').read_text())
    lk = m['likelihood']
    assert set(lk) == {'ngram', 'base', 'finetuned'} and m['inputs']['scored_examples'] == 2
    assert lk['base']['bits'] == pytest.approx(expected_base, rel=1e-4)
    assert lk['finetuned']['bits'] == pytest.approx(expected_tuned, rel=1e-4)
    assert abs(expected_tuned - expected_base) > 1
    assert lk['ngram']['notes'] == lk['base']['notes'] == 48
    assert m['sets']['generated']['longest_copy_max'] == 24  # sample_1 copies a training answer
    assert m['sets']['generated']['valid_share'] < 1.0         # ... followed by a broken token
    assert m['sets']['ngram']['pieces'] == 2 and len(list((out/'ngram_samples').glob('sample_*.txt'))) == 2
    assert {'report.md', 'report.html', 'hist_pitch.png', 'eval_config.json'} <= {p.name for p in out.iterdir()}
    assert '| finetuned |' in (out/'report.md').read_text()


def test_job_with_an_empty_test_split(tmp_path):
    "A tiny corpus can leave the test split empty: the job still writes its report, with missing values as –"
    from datasets import Dataset, DatasetDict, load_from_disk
    gen_dir, data_dir = write_demo_inputs(tmp_path/'in', need(SEED).parent)
    ds = load_from_disk(str(data_dir))
    empty = DatasetDict({'train': ds['train'], 'test': ds['test'].select([])})
    empty.save_to_disk(str(tmp_path/'empty'), num_shards={'train': 1, 'test': 1})  # as 11_dataset saves it
    (tmp_path/'empty'/'manifest.json').write_text((data_dir/'manifest.json').read_text())
    m = evaluate(EvalConfig(generated_dir=str(gen_dir), reference=str(tmp_path/'empty'), out_dir=str(tmp_path/'out'),
                            ngram_samples=1, ngram_sample_notes=8))
    assert set(m['likelihood']) == {'ngram'} and m['likelihood']['ngram']['notes'] == 0
    assert m['sets']['reference']['pieces'] == 0 and m['sets']['generated']['pieces'] == 2
    assert '| ngram | – |' in (tmp_path/'out'/'report.md').read_text()
