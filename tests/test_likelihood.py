"Bits per note: intervals against exact enumeration, baselines that are true distributions, the strong baseline's bar, models scored as themselves"
import itertools, math, os
import numpy as np
import pytest

os.environ['HF_HUB_OFFLINE'] = '1'
from smidilab.likelihood import *
from smidilab.likelihood import _components, _spelling_prob


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    "The small dataset 20_likelihood builds from the embedded corpus, and its answer records per split"
    path = demo_dataset(tmp_path_factory.mktemp('demo') / 'data')
    ds, _ = load_reference(path)
    return path, {s: [answer_record(r) for r in ds[s]] for s in ds}


@pytest.fixture(scope='module')
def cpu_split(tmp_path_factory):
    "The cpu preset's dataset of the embedded default corpus (max_tokens 1024, 3 augmentations), as `smidilab run` builds it"
    from smidilab.dataset import DatasetConfig, build_dataset
    out = tmp_path_factory.mktemp('cpu') / 'data'
    build_dataset(DatasetConfig(out_dir=str(out), max_tokens=1024, augment=3), progress=False)
    return out


# --- intervals

def exact_percentiles(ratios, level=0.95):
    "The percentiles of the mean over every equally likely resample of the groups (no randomness)"
    means = [np.mean(c) for c in itertools.product(ratios, repeat=len(ratios))]
    return tuple(np.quantile(means, q, method='inverted_cdf') for q in ((1 - level) / 2, 1 - (1 - level) / 2))


@pytest.mark.parametrize('ratios', [[4.0, 10.0], [1.0, 2.0, 9.0], [3.0, 3.5, 5.0, 12.0]])
def test_bootstrap_matches_exact_enumeration_of_resamples(ratios):
    "Each group has 1-3 answers whose bits over notes give its ratio; the bootstrap converges to the exact percentiles"
    values, weights, groups = [], [], []
    for g, r in enumerate(ratios):
        for k in range(1 + g % 3): values.append(r * (k + 1)); weights.append(k + 1); groups.append(f'piece{g}')
    assert group_mean(values, groups, weights) == pytest.approx(np.mean(ratios))
    lo, hi = bootstrap_ci(values, groups, weights, seed=1, n_boot=20000)
    elo, ehi = exact_percentiles(ratios)
    spread = max(ratios) - min(ratios)
    assert abs(lo - elo) < 0.05 * spread and abs(hi - ehi) < 0.05 * spread


def test_one_piece_has_no_interval_and_seeds_reproduce():
    assert bootstrap_ci([1.0, 2.0], ['a', 'a'], [1, 1]) is None
    v, g = np.random.default_rng(0).normal(size=60), np.arange(60) % 30   # 30 groups: many distinct means
    assert bootstrap_ci(v, g, seed=3) == bootstrap_ci(v, g, seed=3) != bootstrap_ci(v, g, seed=4)


def test_paired_difference_is_the_difference_of_means():
    a, b, notes, pieces = [10, 20, 30, 5], [8, 21, 20, 5], [2, 4, 5, 1], ['x', 'x', 'y', 'z']
    t = bits_per_note_table({'a': a, 'b': b}, notes, pieces)
    d = paired_difference(a, b, notes, pieces)
    assert d['bits_per_note'] == pytest.approx(t['a']['bits_per_note'] - t['b']['bits_per_note'])
    assert t['a']['per_piece'] == pytest.approx({'x': 30 / 6, 'y': 6.0, 'z': 5.0})
    assert (t['a']['answers'], t['a']['pieces'], t['a']['notes']) == (4, 3, 12)
    assert t['a']['pooled'] == pytest.approx(65 / 12)


# --- answers and prompts

def test_prompt_notes_of_every_task():
    system = 'For example, p60:v80:d96:t96 is a middle C.'
    assert prompt_note_texts(f'{system} <u>p1:v2:d3:t4 p5:v6:d7:t8</u>', n=2) == ('p1:v2:d3:t4 p5:v6:d7:t8', '')
    assert prompt_note_texts(f'{system} [INST] p1:v2:d3:t4 GAP p5:v6:d7:t8 [/INST]') == ('p1:v2:d3:t4', 'p5:v6:d7:t8')
    rec = answer_record({'prompt': f'{system} <u>p72:v2:d3:t0 p60:v2:d3:t4</u>', 'completion': 'p67:v2:d3:t4',
                         'n_prompt_notes': 2, 'task': 'accompaniment'})
    assert rec['before'] == [] and [n[0] for n in rec['after']] == [72, 60]   # the melody sounds with the answer
    bad = answer_record({'prompt': 'x', 'completion': 'p60:v80:d96:t96 garbage p61:v80:d96:t0'})
    assert [n[0] for n in bad['answer']] == [60, 61] and bad['piece'] == '' and bad['instrument'] == 'piano'


def test_records_read_back_the_dataset_counts(demo):
    _, records = demo
    path = demo[0]
    ds, _ = load_reference(path)
    assert [len(r['answer']) for r in records['test']] == ds['test']['n_notes']
    assert [len(r['before']) for r in records['test']] == ds['test']['n_prompt_notes']


# --- the n-gram (weak baseline)

def test_ngram_bits_approach_zero_on_repetition():
    phrase = [(60 + i, 80, 96, 96, 23) for i in (0, 2, 4, 5, 7, 9, 11, 12)]
    bits = [ngram_bits(fit_ngram([phrase * n], 3), phrase * n) / (8 * n) for n in (5, 50, 500)]
    assert bits[0] > bits[1] > bits[2] > 0 and bits[2] < 0.005


def test_ngram_distribution_sums_to_one(demo):
    "Seen notes + end symbol + the unseen notes' share (the escape mass times the spelling mass left) = 1"
    pieces = [r['answer'] for r in demo[1]['train']]
    model, seen = fit_ngram(pieces, order=3), {s for p in pieces for s in p}
    left = 1 - sum(_spelling_prob(model['spelling'], s) for s in seen)
    for context in ([START, START], [START, pieces[0][0]], pieces[3][5:7], [(1, 2, 3, 4, 5)] * 2):
        escape = 1.0
        for k in range(3):
            entry = model['counts'][k].get(tuple(context[len(context) - k:]) if k else ())
            if entry is None: break
            escape *= entry[2] / (entry[1] + entry[2])
        total = sum(ngram_prob(model, context, s) for s in seen | {END})
        assert total + escape * left == pytest.approx(1.0, abs=1e-9)


# --- the context model (strong baseline)

def field_sums(model, record, note):
    "For each field, the mixture probability summed over every value of that field (durations and t up to 4095)"
    supports = [range(128), range(1, 128), range(4096), range(4096), range(46)]
    out = []
    for k, values in enumerate(supports):
        total = 0.0
        for x in values:
            n = list(note); n[k] = x
            total += float((_components(model, record | {'answer': [tuple(n)]})[k] @ model['weights'][k])[0])
        out.append(total)
    return out


def test_context_model_fields_are_distributions(demo):
    "Trained and with a prompt cache, each field's probabilities over all its values sum to at most one"
    records = demo[1]
    model = fit_context_model(records['train'], records['validation'])
    rec = records['test'][0]
    sums = field_sums(model, rec, rec['answer'][0])
    assert all(s <= 1 + 1e-9 for s in sums), sums
    assert sums[1] == pytest.approx(1.0) and sums[4] == pytest.approx(1.0)   # velocity, bend: the whole support
    assert sums[2] > 0.95 and sums[3] > 0.95 and sums[0] > 0.9


def test_context_model_uses_the_prompt():
    "A piece that repeats the figure in its prompt costs far fewer bits with the cache than the static model alone"
    figure = [(64, 80, 48, 48, 23), (67, 80, 48, 48, 23), (71, 72, 96, 96, 23), (69, 80, 48, 0, 23), (57, 80, 48, 48, 23)]
    other = [(40 + i % 7, 60 + i % 3, 24 * (1 + i % 4), 24 * (1 + i % 2), 23) for i in range(60)]
    train = [{'piece': 't', 'instrument': 'piano', 'task': 'continuation', 'before': other[:20], 'after': [], 'answer': other[20:]}]
    rec = {'piece': 'p', 'instrument': 'piano', 'task': 'continuation', 'before': figure * 3, 'after': [], 'answer': figure * 2}
    cached = fit_context_model(train, [rec])
    assert cached['weights'][0][1:].sum() > 0.5   # EM puts the weight on the cache
    uncached = cached | {'weights': [np.eye(len(w))[0] for w in cached['weights']]}
    assert context_bits(cached, rec) < 0.3 * context_bits(uncached, rec)


def test_strong_baseline_reaches_the_bar_on_the_cpu_split(cpu_split):
    "The embedded default's test split of the cpu preset (17 answers, 2 pieces): at most 12.5 bits per note, far below the n-gram"
    scored = score_test_split(cpu_split, '', progress=False)
    t = scored['table']
    assert t['context']['answers'] == 17 and t['context']['pieces'] == 2
    assert t['context']['bits_per_note'] <= 12.5 and t['context']['pooled'] <= 12.5
    assert best_baseline(t) == 'context' and t['ngram']['bits_per_note'] > t['context']['bits_per_note'] + 5
    assert t['repeat']['bits_per_note'] < t['ngram']['bits_per_note']
    assert scored['sample'] == {'test_answers': 17, 'scored': 17, 'seed': None}


# --- language models

@pytest.fixture(scope='module')
def tiny():
    import torch
    from smidilab.generate import load_generator
    torch.set_num_threads(2)
    gen = load_generator('tiny')
    return gen.model, gen.tokenizer


def test_answer_bits_equal_the_hand_computation(tiny):
    import torch
    model, tok = tiny
    prompt, answer = '<|im_start|>user\np60:v80:d96:t96<|im_end|>\n<|im_start|>assistant\n', 'p62:v80:d96:t96 p64:v80:d96:t0'
    bits, n_tokens = answer_bits(model, tok, [prompt, prompt * 3], [answer, answer + ' p65:v1:d1:t1'],
                                 max_batch_tokens=10**6, progress=False)
    ids_p = tok(prompt)['input_ids']
    ids = ids_p + tok(answer)['input_ids'] + [tok.eos_token_id]
    with torch.no_grad(): logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    hand = -sum(logp[i - 1, ids[i]].item() for i in range(len(ids_p), len(ids))) / math.log(2)
    assert bits[0] == pytest.approx(hand, rel=1e-4) and n_tokens[0] == len(ids) - len(ids_p)


def test_the_base_is_scored_with_its_own_tokenizer(tmp_path, tiny):
    "A run that extended its vocabulary: the base is loaded with the base tokenizer and its own pretrained rows"
    from smidilab.tokens import extend_tokenizer
    from smidilab.model import TrainConfig
    model, tok = tiny
    run = tmp_path / 'run'
    model.save_pretrained(run / 'base')
    extend_tokenizer(tok, 'paper').save_pretrained(run / 'tokenizer')   # the run's tokenizer, longer than the base's
    assert len(extend_tokenizer(tok, 'paper')) > len(tok)
    TrainConfig(base_model='tiny', out_dir=str(run), extend_vocab=True, tokenizer='smollm2').save(run / 'run_config.json')
    base, base_tok = run_base(run)
    assert len(base_tok) == len(tok) and base.get_input_embeddings().weight.shape[0] == model.get_input_embeddings().weight.shape[0]
    p, c = ['<|im_start|>user\np60:v80:d96:t96<|im_end|>\n'], ['p62:v80:d96:t96']
    assert answer_bits(base, base_tok, p, c, progress=False)[0] == pytest.approx(answer_bits(model, tok, p, c, progress=False)[0])
