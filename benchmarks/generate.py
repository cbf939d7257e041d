"""Generation speed: tokens/s and notes/s with and without the grammar constraint, and the constraint's overhead.

    .venv/bin/python benchmarks/generate.py              # CPU: tiny random Llama and SmolLM2-135M (a few minutes on 2 cores)
    .venv/bin/python benchmarks/generate.py --quick      # CPU: tiny model only
    .venv/bin/python benchmarks/generate.py --gpu-model outputs/runs/paper   # + GPU rows at batch 1 and 8 (needs CUDA)

The overhead is the time spent inside the `NoteConstraint` logits processor divided by the rest of the decoding time
(measured in the same run, so the shared cores' noise cancels); tokens/s of the free and constrained runs are shown too.
Prints a markdown table; asserts nothing.
"""
import argparse, os, platform, time
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import torch
from smidilab.generate import GenerateConfig, load_generator, sample, sample_notes, grammar_for

PROMPT = 'p60:v80:d96:t96 p64:v80:d96:t96 p67:v80:d192:t192'

def bench(gen, free: bool, batch: int, max_new_tokens: int, seed: int = 0) -> dict:
    "One timed sampling run: tokens/s, notes/s and the grammar's share of the time"
    cfg = GenerateConfig(n=batch, batch_size=batch, max_new_tokens=max_new_tokens, seed=seed, free=free)
    results, t = sample(gen, [PROMPT], cfg)
    g = grammar_for(gen.settings, cfg)
    notes = sum(len(sample_notes(r['text'], gen.settings, g, free)[0]) for r in results)
    return {'mode': 'free' if free else 'constrained', 'batch': batch, 'tokens': t['tokens'],
            'tokens/s': t['tokens_per_second'], 'notes/s': notes / t['seconds'],
            'ms/token (grammar)': 1e3 * t['grammar_seconds'] / max(t['tokens'], 1),
            'overhead %': 100 * t['grammar_overhead']}

def rows_for(name: str, spec: str, device: str, batches, max_new_tokens: int) -> list[dict]:
    gen = load_generator(spec, device=device)
    bench(gen, True, 1, 4)                       # warm-up (first call builds caches, allocator)
    out = []
    for b in batches:
        for free in (True, False): out.append({'model': name, 'device': device} | bench(gen, free, b, max_new_tokens))
    return out

def print_table(rows: list[dict]):
    cols = list(rows[0])
    print('| ' + ' | '.join(cols) + ' |'); print('|' + '---|' * len(cols))
    for r in rows: print('| ' + ' | '.join(f'{r[c]:.2f}' if isinstance(r[c], float) else str(r[c]) for c in cols) + ' |')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='tiny model only')
    ap.add_argument('--gpu-model', default='smollm2', help='run folder or model spec for the GPU rows')
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = rows_for('tiny', 'tiny', 'cpu', (1, 8), 128)
    if not args.quick: rows += rows_for('smollm2-135m', 'smollm2', 'cpu', (1,), 48)
    if torch.cuda.is_available(): rows += rows_for(args.gpu_model, args.gpu_model, 'cuda', (1, 8), 256)
    else: print('(no CUDA: GPU rows skipped)')
    print(f'machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
          f'GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else "none"}')
    print_table(rows)

if __name__ == '__main__': main()
