"Tokenizer loading, dialects, vocabulary extension and trainable new embeddings (smidilab.tokens)"
import random
from functools import lru_cache
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from conftest import SEED as SEED_DIR, SHARED, LLAMA2, need

from smidilab.core import NoteTable
from smidilab.codec import notes_to_text, text_to_notes, convert_dialect
from smidilab.tokens import *
from smidilab.tokens import _spm_proto
from smidilab.corpus import read_chorales

SEED = SEED_DIR/'test.jsonl'


def _random_strings(n, seed=0, alphabet='pvdtb:-0123456789 \n\tabcXYZé€😀▁'):
    rng = random.Random(seed)
    return [''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def _spm_path(name):
    if name == 'llama2': return need(LLAMA2)
    try: return NAMED_TOKENIZERS['mistral-v1']()
    except FileNotFoundError: pytest.skip('mistral-common not installed')


@lru_cache(None)
def _tokenizer(name):
    return load_tokenizer('smollm2') if name == 'smollm2' else load_tokenizer(_spm_path(name))


@lru_cache(None)
def _extended(name, dialect):
    return extend_tokenizer(_tokenizer(name), dialect)


@lru_cache(None)
def _seed_texts():
    return tuple(read_texts(need(SEED)))


@lru_cache(None)
def _chorale_texts(n=12):
    return tuple(notes_to_text(c) for c in read_chorales(n))


# --- loading -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['llama2', 'mistral-v1'])
def test_spm_tokenizer_equals_sentencepiece(name):
    import sentencepiece as spm
    path = _spm_path(name)
    sp, tok = spm.SentencePieceProcessor(model_file=str(path)), _tokenizer(name)
    texts = _random_strings(2000) + ['p60:v80:d96:t0 p64:v80:d96:t0', '  two  spaces ', '']
    assert encode_batch(tok, texts) == sp.encode(texts)
    assert tok.encode('p60')[0] == sp.bos_id()
    assert count_tokens(tok, texts).tolist() == [len(x) for x in sp.encode(texts)]
    for s in texts[:300]: assert tok.decode(sp.encode(s)) == sp.decode(sp.encode(s))


def test_smollm2_cached_reload(tmp_path):
    a = load_tokenizer('smollm2', cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    b = load_tokenizer('smollm2', cache_dir=tmp_path)
    texts = _random_strings(300, seed=1)
    assert encode_batch(a, texts) == encode_batch(b, texts)
    assert a.eos_token == b.eos_token == '<|im_end|>'
    assert a.chat_template == b.chat_template and a.chat_template


def test_load_tokenizer_errors():
    with pytest.raises(FileNotFoundError, match='no such tokenizer'): load_tokenizer('llama-42')


# --- measurement -------------------------------------------------------------------------------------------------

def test_fields_add_up_and_match_hand_count():
    tok = _tokenizer('smollm2')
    texts = list(_chorale_texts(5))
    m = measure_texts(tok, texts, notes=sum(len(text_to_notes(t)) for t in texts))
    assert m['tokens_per_note'] * m['notes'] == pytest.approx(count_tokens(tok, texts).sum())
    assert sum(m[f] for f in FIELDS) == pytest.approx(m['tokens_per_note'])
    # byte-level BPE, one token per digit: p60 -> 'p' '6' '0' (the space joins 'Ġp'); sep = three ':' per note
    m = measure_texts(tok, ['p60:v100:d5:t1200 p7:v9:d96:t0'], notes=2)
    assert [m[f] * 2 for f in FIELDS] == [5, 6, 5, 7, 0, 6]


# --- dialects ----------------------------------------------------------------------------------------------------

def test_dialect_conversion_lossless_on_fixtures():
    for text in _seed_texts()[::8]:  # the reference's chords are not always in canonical order: compare notes
        compact = convert_dialect(text, 'compact', ticks_per_second=768)
        assert text_to_notes(compact, dialect='compact') == text_to_notes(text)
        assert convert_dialect(compact, 'paper', source='compact') == convert_dialect(text, 'paper')
    for text in _chorale_texts():
        assert convert_dialect(convert_dialect(text, 'compact'), 'paper', source='compact') == text


@st.composite
def notes_texts(draw):
    n = draw(st.integers(1, 30))
    ints = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=n, max_size=n)
    bent = draw(st.booleans())
    notes = NoteTable(pitch=draw(ints(0, 127)), velocity=draw(ints(1, 127)),
                      onset=np.cumsum([0] + draw(ints(0, 30000))[:-1]), duration=draw(ints(0, 30000)),
                      bend=draw(ints(0, 45)) if bent else None, instrument='guitar' if bent else 'piano')
    return notes, draw(st.sampled_from(['paper', 'compact']))


@given(notes_texts())
@settings(max_examples=80, deadline=None)
def test_extended_tokenizers_are_lossless_on_random_pieces(case):
    notes, dialect = case
    text = notes_to_text(notes, dialect=dialect)
    assert convert_dialect(convert_dialect(text, 'compact' if dialect == 'paper' else 'paper', source=dialect,
                                           instrument=notes.instrument), dialect,
                           source='compact' if dialect == 'paper' else 'paper', instrument=notes.instrument) == text
    for name in ('llama2', 'smollm2'):
        if name == 'llama2' and not LLAMA2.exists(): continue
        tok = _extended(name, dialect)
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


# --- vocabulary extension ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['llama2', 'smollm2', 'mistral-v1'])
@pytest.mark.parametrize('dialect', ['paper', 'compact'])
def test_extended_tokenizer_roundtrips_every_fixture_piece(name, dialect):
    tok = _extended(name, dialect)
    step = 3 if name == 'mistral-v1' else 1  # Mistral v1 encodes digits like Llama-2: a third of the pieces suffices
    seed, _ = rewrite_texts(_seed_texts()[::step], dialect, ticks_per_second=768)
    guitar, _ = rewrite_texts(_chorale_texts(), dialect, bends=True)
    for texts in (seed, guitar):
        ids = encode_batch(tok, texts)
        bad = [t for t, d in zip(texts, tok.batch_decode(ids)) if d != t]
        assert not bad, bad[0][:200]
    # whole-field tokens are used: about one token per field
    assert count_tokens(tok, seed).sum() < 4.5 * sum(t.count('p') for t in seed)


def test_extended_llama2_equals_sentencepiece_with_user_symbols(tmp_path):
    "The SentencePiece-style extension is exactly SentencePiece with the pieces as user-defined symbols"
    import sentencepiece as spm
    proto = _spm_proto(need(LLAMA2))
    for p in extension_pieces('paper', space='▁'):
        piece = proto.pieces.add(); piece.piece, piece.score, piece.type = p, 0.0, 4
    (tmp_path/'ext.model').write_bytes(proto.SerializeToString())
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path/'ext.model'))
    tok = _extended('llama2', 'paper')
    # natural language, as in the prompts (without `<s>`: fast tokenizers read it as the BOS token, SentencePiece as text)
    prose = [l for l in need(SHARED/'DESIGN.md').read_text().splitlines() if '<s>' not in l]
    texts = _random_strings(1500, alphabet='pvdtb:-0123456789 \nx▁') + list(_seed_texts()[:50]) + prose + ['[INST] hi p60 [/INST]']
    assert encode_batch(tok, texts) == sp.encode(texts)


def test_extended_tokenizer_saves_and_loads(tmp_path):
    for name in ('llama2', 'smollm2'):
        if name == 'llama2' and not LLAMA2.exists(): continue
        tok = _extended(name, 'compact')
        tok.save_pretrained(tmp_path/name)
        back = load_tokenizer(tmp_path/name)
        texts = list(_random_strings(200)) + list(_chorale_texts(3))
        assert [back.encode(t) for t in texts] == [tok.encode(t) for t in texts]
        assert len(back) == len(tok)


def test_large_values_fall_back_to_digits():
    tok = _extended('smollm2', 'paper')
    assert tok.tokenize('p60:v80:d1200:t99999') == ['p60', ':v80', ':d120', '0', ':t999', '9', '9']


# --- embeddings --------------------------------------------------------------------------------------------------

def _tiny_llama(vocab, tied):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=tied))


@pytest.mark.parametrize('tied', [True, False])
def test_new_rows_train_old_rows_frozen_under_lora(tied):
    import torch
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(2)
    old, new = _tokenizer('smollm2'), _extended('smollm2', 'compact')
    model = _tiny_llama(len(old), tied)
    ids = resize_embeddings(model, old, new)
    assert ids == list(range(len(old), len(new)))
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == out.shape[0] == len(new)
    v80 = new.convert_tokens_to_ids('v80')
    for w in (emb, out):  # new rows start at the mean of the sub-token rows
        assert torch.allclose(w[v80], w[old.convert_tokens_to_ids(['v', '8', '0'])].mean(0))
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules='all-linear', **extension_peft_kwargs(model, ids)))
    all_ids = torch.arange(len(new))
    def weights():
        e = peft_model.get_input_embeddings()(all_ids).detach().clone()
        o = peft_model.get_output_embeddings()(torch.eye(64)).detach().T.clone()  # rows of the output matrix
        return e, o
    (e0, o0), base0 = weights(), emb.detach().clone()
    batch = torch.tensor([new.encode(notes_to_text(read_chorales(1)[0], dialect='compact'))[:256]])
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model(input_ids=batch, labels=batch).loss.backward()
    opt.step()
    (e1, o1) = weights()
    used = sorted(set(batch[0].tolist()) & set(ids))
    assert used
    for before, after in ((e0, e1), (o0, o1)):
        assert torch.equal(before[:len(old)], after[:len(old)])           # old rows frozen
        assert (before[used] != after[used]).any(1).all()                  # used new rows moved
    assert torch.equal(emb, base0)                                         # the base matrix itself is untouched
    assert any('lora_' in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_extension_of_a_prepend_normalizer_tokenizer(tmp_path):
    "The Hub's Llama-2 tokenizer.json adds the dummy prefix in the normalizer, with no pre-tokenizer: still lossless"
    import json
    tok = _tokenizer('llama2')
    tok.save_pretrained(tmp_path)
    tj = json.loads((tmp_path/'tokenizer.json').read_text())
    tj['normalizer'] = {'type': 'Sequence', 'normalizers': [{'type': 'Prepend', 'prepend': '▁'},
                                                            {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '▁'}]}
    tj['pre_tokenizer'] = None
    (tmp_path/'tokenizer.json').write_text(json.dumps(tj))
    hub_style = load_tokenizer(tmp_path)
    texts = list(_seed_texts()[:200]) + ['p60:v80:d1200:t0 p64:v80:d96:t12345 [/INST]']
    assert encode_batch(hub_style, texts) == encode_batch(tok, texts)
    ext = extend_tokenizer(hub_style, 'paper')
    assert ext.batch_decode(encode_batch(ext, texts)) == texts
    assert ext.tokenize(texts[-1])[:4] == ['▁p60', ':v80', ':d120', '0']
