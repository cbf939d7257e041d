"""Tokens per note: Llama-2, SmolLM2 and Mistral v1 tokenizers x paper/compact dialects x with/without whole-field tokens.

    .venv/bin/python benchmarks/tokens.py            # prints a Markdown table, writes outputs/benchmarks/tokens.{md,json}
    .venv/bin/python benchmarks/tokens.py --quick    # a tenth of each corpus

Corpora: music21's Bach chorales (192 ticks/s), the reference test set ../shared/fixtures/seed/test.jsonl (768 ticks/s,
piano), the same test set in the guitar layout (a `b` field on every note), and the Guitar Pro fixtures that carry bends
(192 ticks/s) when smidilab.guitarpro is available. Extra rows (marked *) measure grammar variants the compact dialect
could adopt; they and the longer d/t range use SmolLM2 only (the three tokenizers split digits alike and give the same
counts on this text). Asserts nothing; times nothing.
"""
import os, re, sys, importlib.util
from pathlib import Path
# run as a script, this folder comes first on sys.path, and benchmarks/guitarpro.py would shadow the pyguitarpro package
sys.path = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
from smidilab.core import find_inputs, convert_files, write_json
from smidilab.codec import notes_to_text
from smidilab.tokens import *
from smidilab.corpus import read_chorales

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent/'shared'
LLAMA2 = SHARED/'tokenizers'/'llama2'/'tokenizer.model'


def tokenizers() -> dict:
    toks = {'llama2': load_tokenizer(LLAMA2)} if LLAMA2.exists() else {}
    toks['smollm2'] = load_tokenizer('smollm2')
    if importlib.util.find_spec('mistral_common'): toks['mistral-v1'] = load_tokenizer('mistral-v1')
    return toks


def guitar_texts() -> list[str]:
    "Guitar Pro fixtures with bends, as paper text with bend curves"
    try: from smidilab.guitarpro import read_music
    except ImportError: return []
    files = find_inputs([SHARED/'fixtures'/'guitarpro'/'pyguitarpro'], exts=('.gp3', '.gp4', '.gp5'))
    tables = [r.value for r in convert_files(read_music, files, progress=False) if r.ok and len(r.value)]
    return [notes_to_text(t, bends=True, curves=True) for t in tables if (t.bend != 23).any()]


def corpora(step: int) -> dict:
    seed = read_texts(SHARED/'fixtures'/'seed'/'test.jsonl')[::step] if (SHARED/'fixtures').exists() else []
    chorales = [notes_to_text(c) for c in read_chorales()[::step]]
    return {'chorales': (chorales, 192, None), 'seed': (seed, 768, None), 'seed, guitar layout (b on every note)': (seed, 768, True),
            'guitar pro fixtures with bends (curves)': (guitar_texts(), 192, True)}


def variant_rows(texts, tps, toks, corpus) -> list[dict]:
    "Compact-dialect variants that text_to_notes does not parse yet: measured on the rewritten text"
    compact, notes = rewrite_texts(texts, 'compact', ticks_per_second=tps)
    variants = {'compact, d omitted when repeated*': [_drop_repeated_d(t) for t in compact],
                'compact, no space between notes*': [t.replace(' ', '') for t in compact]}
    rows = []
    for name, vt in variants.items():
        for tname, tok in toks.items():
            for ext in (False, True):
                t = extend_tokenizer(tok, 'compact') if ext else tok
                rows.append({'corpus': corpus, 'tokenizer': tname, 'dialect': name, 'extended': ext} | measure_texts(t, vt, notes))
    return rows


def _drop_repeated_d(text: str) -> str:
    out, prev = [], None
    for tok in text.split(' '):
        d = re.search(r'd[0-9]+', tok).group()
        out.append(tok.replace(d, '', 1) if d == prev else tok); prev = d
    return ' '.join(out)


def main(quick: bool = False):
    toks, rows = tokenizers(), []
    smol = {'smollm2': toks['smollm2']}
    for corpus, (texts, tps, bends) in corpora(10 if quick else 1).items():
        if not texts: continue
        dialects = ('paper',) if corpus.startswith('seed, guitar') else ('paper', 'compact')  # compact omits b23
        rows += measure_grid(texts, toks, dialects, bends=bends, ticks_per_second=tps, corpus=corpus)
        if corpus == 'seed':
            rows += measure_grid(texts, smol, extend=(True,), ticks=4096, ticks_per_second=tps, corpus='seed, d/t tokens to 4095')
        if corpus in ('chorales', 'seed'): rows += variant_rows(texts, tps, smol, corpus)
    table = format_table(rows)
    print(table)
    out = REPO/'outputs'/'benchmarks'
    out.mkdir(parents=True, exist_ok=True)
    (out/'tokens.md').write_text(table + '\n')
    write_json(out/'tokens.json', rows)


if __name__ == '__main__':
    main(quick='--quick' in sys.argv)
