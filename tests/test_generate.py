"Generation end to end with the tiny random Llama: constrained samples always parse, files reopen, seeds reproduce"
import json, os, wave
from dataclasses import replace
from pathlib import Path
os.environ['HF_HUB_OFFLINE'] = '1'
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
torch.set_num_threads(1)  # the shared cores are oversubscribed: one thread is several times faster
from smidilab.codec import text_to_notes, notes_to_text
from smidilab.core import NoteTable
from smidilab.grammar import NoteGrammar, INSTRUMENT_PITCHES, accepts, run_grammar, whole_notes, grammar_ebnf
from smidilab.generate import GenerateConfig, generate, grammar_for, load_generator, sample, sample_notes

NBS = Path(__file__).parents[1]/'nbs'

@pytest.fixture(scope='session')
def run_dir(tmp_path_factory):
    "A run folder as the train stage writes it (toy dataset, tiny base, run_config.json), with a random LoRA adapter"
    from peft import LoraConfig, get_peft_model
    from smidilab.model import TrainConfig, load_base, base_config, base_tokenizer
    from smidilab.train import prepare_run
    cfg = prepare_run(TrainConfig(out_dir=str(tmp_path_factory.mktemp('runs')/'tiny')))
    tok = base_tokenizer('smollm2')
    base = load_base(cfg, base_config(cfg, tok))
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=['q_proj', 'v_proj'], init_lora_weights=False))
    run = Path(cfg.out_dir)
    lora.save_pretrained(run/'adapter'); base.config.save_pretrained(run/'adapter'); tok.save_pretrained(run/'tokenizer')
    return run

@pytest.fixture(scope='session')
def run_gen(run_dir): return load_generator(str(run_dir))

@pytest.fixture(scope='session')
def gen(run_gen):
    "The run's generator, as if trained on guitar with bends (gp5 export, guitar pitch range, `b` fields)"
    return replace(run_gen, settings=run_gen.settings | {'instrument': 'guitar', 'bends': True})

def test_run_settings_and_adapter(run_gen, run_dir):
    "The run's settings come from run_config.json, and the merged adapter changes the base model's output"
    rc = json.loads((run_dir/'run_config.json').read_text())
    assert {k: run_gen.settings[k] for k in ('dialect', 'ticks_per_second', 'bends', 'base_model')} == \
           {k: rc[k] for k in ('dialect', 'ticks_per_second', 'bends', 'base_model')}
    assert run_gen.settings['run'] == str(run_dir) and run_gen.tokenizer.padding_side == 'left'
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(run_dir/'base')
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(): assert not torch.allclose(base(ids).logits, run_gen.model(ids).logits)

def test_constrained_always_strictly_parseable(gen):
    "20 seeds from an untrained model: every sample is a valid note prefix, and parses strictly once cut at a note end"
    cfg = GenerateConfig(n=20, batch_size=10, max_new_tokens=40, seed=123)
    samples, _ = sample(gen, ['p64:v80:d96:t96'], cfg)
    g = grammar_for(gen.settings, cfg)
    for s in samples:
        state, good = run_grammar(g, s['text'])
        assert state is not None, s['text']
        if s['stopped']: assert good == len(s['text']), s['text']   # stopped at EOS = at a note end
        notes = text_to_notes(s['text'][:whole_notes(g, s['text'], s['stopped'])])
        assert notes.pitch.min() >= INSTRUMENT_PITCHES['guitar'][0] and notes.pitch.max() <= INSTRUMENT_PITCHES['guitar'][1]
        chord = notes.onset[1:] == notes.onset[:-1]
        assert (notes.pitch[1:][chord] < notes.pitch[:-1][chord]).all(), s['text']   # chords from the top down
    assert sum(s['stopped'] for s in samples) > 0 and sum(len(s['ids']) for s in samples) > 200

def _notes_of(samples, g):
    return [text_to_notes(x['text'][:whole_notes(g, x['text'], x['stopped'])], dialect=g.dialect) for x in samples]

def test_compact_dialect_and_note_limit(gen):
    "The compact grammar holds too; max_notes stops every sample at the limit, where the same seeds without it go on"
    g_gen = replace(gen, settings=gen.settings | {'dialect': 'compact'})
    cfg = GenerateConfig(n=6, batch_size=6, max_new_tokens=60, max_notes=2, seed=5)
    g = grammar_for(g_gen.settings, cfg)
    limited = _notes_of(sample(g_gen, ['p64v80d96t96'], cfg)[0], g)
    unlimited = _notes_of(sample(g_gen, ['p64v80d96t96'], replace(cfg, max_notes=0))[0], g)
    assert max(len(n) for n in unlimited) > 2          # the untrained model would write more ...
    assert [len(n) for n in limited].count(2) >= 3 and max(len(n) for n in limited) == 2   # ... the limit stops it

def _most_sounding(n) -> int:
    return max([int(((n.onset <= o) & (n.onset + n.duration > o)).sum()) for o in n.onset], default=0)

def test_polyphony_limit(gen):
    "max_polyphony=2: at no onset of any sample do more than two notes sound, where the same seeds without it reach more"
    cfg = GenerateConfig(n=8, batch_size=8, max_new_tokens=60, max_polyphony=2, seed=11)
    g = grammar_for(gen.settings, cfg)
    limited = _notes_of(sample(gen, ['p64:v80:d96:t96'], cfg)[0], g)
    free = _notes_of(sample(gen, ['p64:v80:d96:t96'], replace(cfg, max_polyphony=0))[0], g)
    assert max(_most_sounding(n) for n in free) > 2 and sum(len(n) for n in limited) >= 16
    assert max(_most_sounding(n) for n in limited) == 2   # reached, never passed

def test_same_seed_same_output(gen):
    cfg = GenerateConfig(n=3, batch_size=3, max_new_tokens=24, seed=7)
    first = [s['text'] for s in sample(gen, ['p64:v80:d96:t96'], cfg)[0]]
    assert [s['text'] for s in sample(gen, ['p64:v80:d96:t96'], cfg)[0]] == first
    assert [s['text'] for s in sample(gen, ['p64:v80:d96:t96'], replace(cfg, seed=8))[0]] != first

def test_free_garbage_is_reported_not_raised(gen, tmp_path):
    "An untrained model sampled freely writes garbage: the job finishes and the report lists what was dropped"
    cfg = GenerateConfig(n=2, batch_size=2, max_new_tokens=24, free=True, wav=False, out_dir=str(tmp_path))
    result = generate(cfg, gen)
    dropped = [d for s in result['samples'] for d in s['parse']['dropped']]
    assert dropped and all(d['reason'] for d in dropped)
    assert all((tmp_path/f'sample_{k}.txt').exists() for k in range(2))

def test_every_file_reopens(gen, tmp_path):
    "txt, mid (mido), gp5 (pyguitarpro), wav (wave, duration within 1 s of the notes), png, generation.json"
    import mido, guitarpro
    cfg = GenerateConfig(n=2, batch_size=2, max_new_tokens=40, seed=3, out_dir=str(tmp_path))
    result = generate(cfg, gen)
    saved = json.loads((tmp_path/'generation.json').read_text())
    assert saved['config'] == json.loads(json.dumps(result['config']))
    assert saved['eos_stop_rate'] + saved['truncation_rate'] == 1
    assert 0 < saved['timing']['constraint_share'] < 1 and saved['timing']['constraint_ms_per_step'] > 0
    for s in saved['samples']:   # the raw text is kept; the file holds it cut to whole notes
        assert s['raw_text'].lstrip().startswith((tmp_path/f"sample_{s['sample']}.txt").read_text().strip())
    for s in result['samples']:
        stem = tmp_path/f"sample_{s['sample']}"
        notes = text_to_notes(stem.with_suffix('.txt').read_text())   # constrained samples are written cut to whole notes
        assert s['notes'] == len(notes) > 0
        on = [m for m in mido.MidiFile(stem.with_suffix('.mid')) if m.type == 'note_on' and m.velocity > 0]
        assert len(on) == len(notes)
        assert len(guitarpro.parse(str(stem.with_suffix('.gp5'))).tracks) >= 1
        assert stem.with_suffix('.png').stat().st_size > 1000
        if 'wav' in s['errors']: assert 'FluidSynth' in s['errors']['wav']; continue
        with wave.open(str(stem.with_suffix('.wav'))) as w:
            music = max(notes.end, notes.last_offset) / 192   # the last note may ring past the text's end
            assert abs(w.getnframes() / w.getframerate() - music) < 1.0

def test_prompts_from_a_dataset_split(gen, tmp_path):
    "--from-dataset data/NAME:SPLIT takes the first examples' prompts of each instrument as they are"
    from datasets import Dataset, DatasetDict
    rows = {'prompt': ['<|im_start|>user\np60:v80:d96:t96<|im_end|>\n', '<|im_start|>user\np64:v80:d96:t96<|im_end|>\n',
                       '<|im_start|>user\np40:v80:d96:t96<|im_end|>\n'],
            'completion': ['p62:v80:d96:t96'] * 3, 'instrument': ['piano', 'piano', 'bass']}
    DatasetDict({'validation': Dataset.from_dict(rows)}).save_to_disk(str(tmp_path/'data'))
    cfg = GenerateConfig(from_dataset=f"{tmp_path/'data'}:validation", n_prompts=1, n=1, batch_size=2, max_new_tokens=24,
                         wav=False, out_dir=str(tmp_path/'gen'))
    result = generate(cfg, gen)
    assert result['prompts'] == [rows['prompt'][0], rows['prompt'][2]]
    assert [s['instrument'] for s in result['samples']] == ['piano', 'bass']
    assert tuple(result['samples'][1]['grammar']['pitch']) == INSTRUMENT_PITCHES['bass']
    assert (tmp_path/'gen'/'sample_1.gp5').exists() and not (tmp_path/'gen'/'sample_0.gp5').exists()

ALPHABET = 'pvdtb:0123456789 '

@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=40), st.sampled_from(['paper', 'compact']))
def test_grammar_accepts_only_what_the_strict_parser_reads(text, dialect):
    "Whatever the automaton accepts, the codec's strict parser reads (with the same ranges)"
    if accepts(NoteGrammar(dialect), text):
        notes = text_to_notes(text, dialect=dialect)
        assert len(notes) == text.count('p') and notes.duration.max() <= 3840

@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.integers(1, 127), st.integers(0, 3840), st.integers(0, 3840),
                          st.integers(0, 45)), min_size=1, max_size=8), st.sampled_from(['paper', 'compact']))
def test_grammar_accepts_every_written_text(rows, dialect):
    "Every note table the codec writes (within the bounds) is accepted: the constraint never forbids valid music"
    p, v, d, t, b = map(list, zip(*rows))
    notes = NoteTable(pitch=p, velocity=v, onset=np.cumsum([0] + t[:-1]), duration=d, bend=b, end=sum(t) + max(d))
    assume(len(set(zip(notes.onset.tolist(), p))) == len(p))   # one pitch twice at one onset is refused by design (18_grammar)
    text = notes_to_text(notes, bends=True, dialect=dialect)
    if max(np.diff(np.append(notes.onset, notes.end))) <= 3840: assert accepts(NoteGrammar(dialect), text), text

@pytest.mark.parametrize('dialect', ['paper', 'compact'])   # the decomposed dialect has no EBNF form (its chords)
@pytest.mark.parametrize('instrument', ['piano', 'guitar'])
def test_same_tokens_as_xgrammar(gen, instrument, dialect):
    "xgrammar on the production grammar's EBNF masks exactly what NoteConstraint masks: same seeds, same samples"
    import xgrammar as xgr
    from smidilab.grammar import NoteConstraint
    g = grammar_for(gen.settings | {'instrument': instrument, 'dialect': dialect}, GenerateConfig())
    info = xgr.TokenizerInfo.from_huggingface(gen.tokenizer, vocab_size=gen.model.config.vocab_size)
    compiled = xgr.GrammarCompiler(info).compile_grammar(grammar_ebnf(g))
    prompt = 'p60:v80:d96:t96' if dialect == 'paper' else 'p60v80d96t96'
    enc = gen.tokenizer([prompt] * 4, return_tensors='pt')
    def run(proc):
        torch.manual_seed(0)
        out = gen.model.generate(**enc, do_sample=True, top_p=0.95, top_k=0, max_new_tokens=40, logits_processor=[proc],
                                 pad_token_id=gen.tokenizer.pad_token_id)
        return gen.tokenizer.batch_decode(out[:, enc['input_ids'].shape[1]:], skip_special_tokens=True)
    ours = run(NoteConstraint(gen.tokenizer, g))
    assert ours == run(xgr.contrib.hf.LogitsProcessor(compiled))
    assert sum(len(t) for t in ours) > (100 if dialect == 'paper' else 40) and g.bends == (instrument == 'guitar')


def test_decomposed_grammar_has_no_ebnf():
    from smidilab.core import SmidiError
    with pytest.raises(SmidiError, match='no EBNF form'): grammar_ebnf(NoteGrammar('decomposed'))

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(21, 108), st.integers(0, 3)), min_size=2, max_size=6), st.sampled_from(['paper', 'compact']))
def test_grammar_rejects_a_repeated_or_rising_pitch_inside_a_chord(rows, dialect):
    "A chord is written from the top down; the automaton accepts a note at the same onset only with a lower pitch"
    pitches, gaps = [p for p, _ in rows], [0 if k == 0 else 96 for _, k in rows]
    words = [f'p{p}:v80:d96:t{t}' if dialect == 'paper' else f'p{p}v80d96t{t}' for p, t in zip(pitches, gaps)]
    ok = all(b < a for a, b, t in zip(pitches, pitches[1:], gaps) if t == 0)
    assert accepts(NoteGrammar(dialect), ' '.join(words)) == ok, words

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.integers(1, 127), st.integers(0, 3840), st.integers(1, 3840),
                          st.integers(0, 45)), min_size=1, max_size=6), st.integers(0, 200), st.sampled_from(['paper', 'compact']))
def test_truncation_never_leaves_a_partial_number(rows, cut, dialect):
    "A valid text cut anywhere (a sample at its token budget) keeps only notes that the full text has, whole"
    p, v, d, t, b = map(list, zip(*rows))
    notes = NoteTable(pitch=p, velocity=v, onset=np.cumsum([0] + t[:-1]), duration=d, bend=b, end=sum(t))
    text = notes_to_text(notes, bends=True, dialect=dialect)
    cut_text = text[:cut]
    settings_ = {'ticks_per_second': 192, 'instrument': 'piano', 'bend_range': 4.0}
    kept_notes, report, kept = sample_notes(cut_text, settings_, NoteGrammar(dialect), free=False, finished=False)
    full, part = text.split(' '), kept.split(' ') if kept else []
    assert part == full[:len(part)]
    assert len(kept_notes) == len(part) and report['truncated_chars'] == len(cut_text) - len(kept)
    if cut >= len(text): assert len(part) == len(full) - 1   # even a complete-looking last note may be a number cut short

from conftest import FIXTURES, LLAMA2, need

@pytest.mark.parametrize('dialect', ['paper', 'compact'])
def test_constraint_with_the_llama2_tokenizer(dialect):
    "The study's SentencePiece tokenizer (leading-space pieces, byte fallback): random scores still write valid notes"
    need(LLAMA2)
    from smidilab.tokens import load_tokenizer
    from smidilab.grammar import NoteConstraint
    tok, g = load_tokenizer(str(LLAMA2)), NoteGrammar(dialect)
    for seed in range(3):
        gen, ids = torch.Generator().manual_seed(seed), torch.ones((1, 1), dtype=torch.long)
        proc = NoteConstraint(tok, g)
        for _ in range(100):
            nxt = proc(ids, torch.randn((1, len(tok)), generator=gen)).argmax(-1, keepdim=True)
            if nxt.item() == tok.eos_token_id: break
            ids = torch.cat([ids, nxt], 1)
        text = tok.decode(ids[0, 1:], skip_special_tokens=True)
        assert len(text_to_notes(text[:run_grammar(g, text)[1]], dialect=dialect)) >= 1, text

def test_missing_fluidsynth_is_reported(gen, tmp_path, monkeypatch):
    "Without FluidSynth the WAV step says so in generation.json and every other file is still written"
    import smidilab.export as E   # the exporters, shared with `smidilab decode`
    monkeypatch.setattr(E.shutil, 'which', lambda name: None)
    result = generate(GenerateConfig(n=1, batch_size=1, max_new_tokens=16, out_dir=str(tmp_path)), gen)
    s = result['samples'][0]
    assert 'FluidSynth is not installed' in s['errors']['wav']
    assert {f.split('.')[-1] for f in s['files']} == {'txt', 'mid', 'png', 'gp5'}

def test_prompt_from_a_guitar_pro_file(run_gen, tmp_path):
    "A GP5 file's first notes make the prompt; its instrument (guitar) picks the persona, pitch range and GP5 export"
    from smidilab.examples import PERSONAS
    gp5 = FIXTURES/'guitarpro'/'gp2midi'/'test_gp5.gp5'
    cfg = GenerateConfig(prompt_file=str(gp5), prompt_notes=6, n=1, batch_size=1, max_new_tokens=24, wav=False,
                         out_dir=str(tmp_path))
    result = generate(cfg, run_gen)
    prompt = result['prompts'][0]
    assert PERSONAS['guitar'] in prompt
    user = prompt.split('<|im_start|>user\n')[1].split('<|im_end|>')[0]
    assert len(text_to_notes(user)) == 6
    assert result['samples'][0]['instrument'] == 'guitar' and (tmp_path/'sample_0.gp5').exists()

def test_notebook_runs_under_papermill(tmp_path, run_dir):
    "The job notebook samples from the run it is given (not its demo model) into out_dir"
    from smidilab.run import run_job
    assert run_job('generate', {'model': str(run_dir), 'out_dir': str(tmp_path/'gen'), 'n': 1, 'batch_size': 1,
                                'max_new_tokens': 16, 'wav': False}, tmp_path, log=False) == 0
    result = json.loads((tmp_path/'gen'/'generation.json').read_text())
    assert result['settings']['run'] == str(run_dir) and result['config']['n'] == 1
    assert (tmp_path/'gen'/'sample_0.mid').exists()


# The decomposed dialect: counts that must agree across a phrase's lines

@st.composite
def unison_free_notes(draw, max_notes=40):
    "Notes within the grammar's bounds, chords included (gap 0), never two of one pitch at one onset"
    rows = draw(st.lists(st.tuples(st.integers(0, 127), st.integers(1, 127), st.integers(0, 3840),
                                   st.one_of(st.just(0), st.integers(1, 3840)), st.integers(0, 45)),
                         min_size=1, max_size=max_notes))
    p, v, d, t, b = (np.array(c) for c in zip(*rows))
    onset = np.cumsum(np.r_[0, t[:-1]])
    keep = sorted({(o, q): i for i, (o, q) in enumerate(zip(onset, p))}.values())
    bent = draw(st.booleans())
    notes = NoteTable(pitch=p[keep], velocity=v[keep], onset=onset[keep], duration=d[keep],
                      bend=b[keep] if bent else None, end=int(onset[keep][-1] + draw(st.integers(0, 3840))),
                      instrument='guitar' if bent else 'piano')
    return notes, bent

@given(unison_free_notes())
@settings(max_examples=150, deadline=None)
def test_decomposed_grammar_accepts_every_written_text_and_no_count_mismatch(case):
    "Every decomposed text the codec writes is accepted; one item more or less on any line is not"
    notes, bends = case
    g = NoteGrammar('decomposed', bends=bends)
    text = notes_to_text(notes, bends=bends, dialect='decomposed')
    assert accepts(g, text), text
    assert text_to_notes(text, dialect='decomposed', instrument=notes.instrument) == notes
    lines = text.split('\n')
    for k, line in enumerate(lines):
        items = line.split(' ')
        if k % (4 if bends else 3) or len(items) < 16:   # a full rhythm line cannot grow
            longer = lines[:k] + [line + ' ' + items[-1]] + lines[k + 1:]
            assert not accepts(g, '\n'.join(longer)), (k, longer)
        if len(items) > 1:
            shorter = lines[:k] + [' '.join(items[:-1])] + lines[k + 1:]
            assert not accepts(g, '\n'.join(shorter)), (k, shorter)

@given(unison_free_notes(), st.integers(0, 400))
@settings(max_examples=100, deadline=None)
def test_decomposed_truncation_keeps_whole_phrases(case, cut):
    "A decomposed text cut anywhere keeps only whole phrases of the full text, and parses strictly"
    notes, bends = case
    g = NoteGrammar('decomposed', bends=bends)
    text = notes_to_text(notes, bends=bends, dialect='decomposed')
    kept = text[:whole_notes(g, text[:cut], finished=cut >= len(text))]
    per = 4 if bends else 3
    lines = kept.split('\n') if kept else []
    assert len(lines) % per == 0 and text.startswith(kept)
    assert len(text_to_notes(kept, dialect='decomposed')) == (len(notes) if kept == text else 16 * len(lines) // per)

class _Adversary(torch.nn.Module):
    "Scores that push a decomposed answer towards mismatched counts: long rhythm lines, every other line ended at once"
    def __init__(self, tokenizer, prompt_len):
        super().__init__()
        self.tok, self.prompt_len = tokenizer, prompt_len
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.space = torch.tensor([t.startswith(' ') for t in texts])
        self.newline = torch.tensor(['\n' in t for t in texts])

    def __call__(self, input_ids, scores):
        for r, ids in enumerate(input_ids):
            line = self.tok.decode(ids[self.prompt_len:]).split('\n')[-1].lstrip(' ')
            scores[r, :len(self.space)] += 20 * (self.space if line.startswith('d') or not line else self.newline)
        return scores

def _counts_agree(text: str, bends: bool) -> bool:
    "Independent check of a decomposed prefix: each line as long as its phrase's rhythm line (the text's last line at most)"
    lines, per = text.lstrip(' ').split('\n'), 4 if bends else 3
    size = lambda k: len(lines[k].split(' '))
    return all(size(k) == size(k - k % per) if k < len(lines) - 1 else size(k) <= size(k - k % per) for k in range(len(lines)))

def test_decomposed_answer_with_mismatched_counts_cannot_be_generated(gen):
    "An adversary favours long rhythm lines and ending every later line at once; under NoteConstraint the counts still agree"
    from transformers import LogitsProcessorList
    from smidilab.grammar import NoteConstraint
    tok = gen.tokenizer
    enc = tok(['d96t96\np60\nv80\n'] * 6, return_tensors='pt')
    adversary = _Adversary(tok, enc['input_ids'].shape[1])
    assert not _counts_agree('d96 d48\np60\nv80 v80', False) and _counts_agree('d96 d48\np60 p59\nv80', False)
    for bends in (False, True):
        g = grammar_for(gen.settings | {'dialect': 'decomposed', 'bends': bends, 'instrument': 'guitar'}, GenerateConfig())
        torch.manual_seed(0)
        out = gen.model.generate(**enc, do_sample=True, max_new_tokens=220, pad_token_id=tok.pad_token_id,
                                 logits_processor=LogitsProcessorList([adversary, NoteConstraint(tok, g)]))
        texts = tok.batch_decode(out[:, enc['input_ids'].shape[1]:], skip_special_tokens=True)
        for text in texts:
            assert run_grammar(g, text)[0] is not None, text
            assert len(text.lstrip(' ').split('\n')[0].split(' ')) > 1, text   # the adversary got its long rhythm line ...
            assert _counts_agree(text, bends), text                  # ... and no later line ended early
        assert sum(t.count('\n') for t in texts) >= 6 * (3 if bends else 2)   # every sample went past its pitch line
