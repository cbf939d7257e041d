"""Generation speed: tokens/s and notes/s free and grammar-constrained, and the constraint's cost per decoding step.

    .venv/bin/python benchmarks/generate.py              # CPU: tiny random Llama and SmolLM2-135M (a few minutes on 2 cores)
    .venv/bin/python benchmarks/generate.py --quick      # CPU: tiny model only
    .venv/bin/python benchmarks/generate.py --gpu-model outputs/runs/paper   # + GPU rows at batch 1 and 8 (needs CUDA)

Constraints compared: none (free), smidilab's `NoteConstraint`, and xgrammar's HF logits processor on the same
grammar exported by `smidilab.grammar.grammar_ebnf` (only if `xgrammar` is installed). Both use the production grammar
of a piano run (`grammar_for`): paper dialect, the piano's pitch range, chords from the top down, no bends. The
constraint's cost is reported as milliseconds per decoding step and as its share of the step time, measured in the
same run, so the shared cores' noise largely cancels. Prints a markdown table; asserts nothing.
"""
import argparse, os, platform, sys, time
from pathlib import Path
# benchmarks/guitarpro.py would shadow the pyguitarpro package `guitarpro` that smidilab imports
sys.path = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch
from transformers import LogitsProcessor
from smidilab.grammar import NoteConstraint, grammar_ebnf
from smidilab.generate import GenerateConfig, grammar_for, load_generator, sample_notes

PROMPT = 'p60:v80:d96:t96 p64:v80:d96:t96 p67:v80:d192:t192'
SETTINGS = {'dialect': 'paper', 'ticks_per_second': 192, 'bends': True, 'instrument': 'piano', 'bend_range': 4.0}
GRAMMAR = grammar_for(SETTINGS, GenerateConfig())   # what a piano run samples with: no `b` for piano

class Timed(LogitsProcessor):
    "Wraps a logits processor and adds up the seconds spent in it"
    def __init__(self, proc): self.proc, self.seconds = proc, 0.0
    def __call__(self, input_ids, scores):
        t0 = time.perf_counter(); out = self.proc(input_ids, scores)
        self.seconds += time.perf_counter() - t0
        return out

def xgrammar_factory(gen):
    "A function making xgrammar's HF logits processor for the paper grammar, or None if xgrammar is missing"
    try: import xgrammar as xgr
    except ImportError: return None
    info = xgr.TokenizerInfo.from_huggingface(gen.tokenizer, vocab_size=gen.model.config.vocab_size)
    compiled = xgr.GrammarCompiler(info).compile_grammar(grammar_ebnf(GRAMMAR))
    return lambda: xgr.contrib.hf.LogitsProcessor(compiled)

def bench(gen, make_proc, batch: int, max_new_tokens: int, seed: int = 0) -> dict:
    "One timed generate call: tokens/s, notes/s and the processor's share of the time"
    tok = gen.tokenizer
    enc = tok([PROMPT] * batch, return_tensors='pt', padding=True).to(gen.model.device)
    procs = [Timed(make_proc())] if make_proc else []
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = gen.model.generate(**enc, do_sample=True, top_p=0.95, top_k=0, max_new_tokens=max_new_tokens,
                                 logits_processor=procs, pad_token_id=tok.pad_token_id)
    secs = time.perf_counter() - t0
    rows = out[:, enc['input_ids'].shape[1]:]
    tokens = int((rows != tok.pad_token_id).sum())
    texts = tok.batch_decode(rows, skip_special_tokens=True)
    finished = (rows == tok.eos_token_id).any(1).tolist()   # ended at EOS: whole; else cut to its last complete note
    notes = sum(len(sample_notes(t, SETTINGS, GRAMMAR, free=not make_proc, finished=f)[0]) for t, f in zip(texts, finished))
    proc_secs = procs[0].seconds if procs else 0.0
    return {'batch': batch, 'tokens': tokens, 'tokens/s': tokens / secs, 'notes/s': notes / secs,
            'constraint ms/step': 1e3 * proc_secs / max(rows.shape[1], 1), 'constraint % of step time': 100 * proc_secs / secs}

def rows_for(name: str, spec: str, device: str, batches, max_new_tokens: int) -> list[dict]:
    gen = load_generator(spec, device=device)
    modes = {'free': None, 'smidilab': lambda: NoteConstraint(gen.tokenizer, GRAMMAR), 'xgrammar': xgrammar_factory(gen)}
    bench(gen, None, 1, 4)                       # warm-up
    out = []
    for b in batches:
        for mode, make in modes.items():
            if mode == 'xgrammar' and make is None: continue
            out.append({'model': name, 'device': device, 'constraint': mode} | bench(gen, make, b, max_new_tokens))
    return out

def print_table(rows: list[dict]):
    cols = list(rows[0])
    print('| ' + ' | '.join(cols) + ' |'); print('|' + '---|' * len(cols))
    for r in rows: print('| ' + ' | '.join(f'{r[c]:.2f}' if isinstance(r[c], float) else str(r[c]) for c in cols) + ' |')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='tiny model only')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (1 is fastest on a shared machine)')
    ap.add_argument('--gpu-model', default='smollm2', help='run folder or model spec for the GPU rows')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = rows_for('tiny', 'tiny', 'cpu', (1, 8), 128)
    if not args.quick: rows += rows_for('smollm2-135m', 'smollm2', 'cpu', (1,), 64)
    if torch.cuda.is_available(): rows += rows_for(args.gpu_model, args.gpu_model, 'cuda', (1, 8), 256)
    else: print('(no CUDA: GPU rows skipped)')
    print(f'machine: {platform.machine()}, {torch.get_num_threads()} torch threads, '
          f'GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else "none"}')
    print_table(rows)

if __name__ == '__main__': main()
