"Tokenizer loading, token counts, dialects and vocabulary extension (smidilab.tokens)"
import os, random
from pathlib import Path
import numpy as np
import pytest

os.environ['HF_HUB_OFFLINE'] = '1'
from smidilab.tokens import *

SHARED = Path(__file__).parents[2]/'shared'
LLAMA2 = SHARED/'tokenizers'/'llama2'/'tokenizer.model'
FIXTURES = SHARED/'fixtures'


def _random_strings(n, seed=0):
    rng = random.Random(seed)
    alphabet = 'pvdtb:-0123456789 \n\tabcXYZé€😀▁'
    return [''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def _spm_files():
    files = [pytest.param(LLAMA2, id='llama2', marks=pytest.mark.skipif(not LLAMA2.exists(), reason='no ../shared'))]
    try: files.append(pytest.param(NAMED_TOKENIZERS['mistral-v1'](), id='mistral-v1'))
    except FileNotFoundError: pass
    return files


@pytest.mark.parametrize('path', _spm_files())
def test_spm_tokenizer_equals_sentencepiece(path):
    import sentencepiece as spm
    sp, tok = spm.SentencePieceProcessor(model_file=str(path)), load_tokenizer(path)
    texts = _random_strings(2000) + ['p60:v80:d96:t0 p64:v80:d96:t0', '  two  spaces ', '']
    assert [e for e in encode_batch(tok, texts)] == sp.encode(texts)
    assert tok.encode('p60')[0] == sp.bos_id()
    assert count_tokens(tok, texts).tolist() == [len(x) for x in sp.encode(texts)]
    for s in texts[:200]: assert tok.decode(sp.encode(s)) == sp.decode(sp.encode(s))


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
