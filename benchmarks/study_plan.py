"""What the study's arms cost on this machine, and how long `smidilab run --preset study` will take here.

    .venv/bin/python benchmarks/study_plan.py            # about 12 minutes on 2 quiet cores
    .venv/bin/python benchmarks/study_plan.py --quick    # one small budget: per-arm wall time only

Runs the study's own code (nbs/24_study.ipynb: the `study` preset's model, train preset and scoring) on a small corpus
at two token budgets, for three arms that bracket the costs: `paper` (LoRA, ~1,000-token sequences), `compact` (LoRA
with whole-field tokens, ~400-token sequences) and `scratch` (every weight trained). The difference of the two runs'
training times over the difference of their tokens is the cost per trained token (loading and evaluations cancel out);
the rest is the fixed cost of an arm. Scoring is timed per scored token. The baselines (fitted on the training split,
which grows with the corpus: scaled by the study preset's pieces over this corpus's) and the winning arm's samples (the
study preset's prompts and samples per prompt, so at full size) are timed too. Prints a Markdown table and the expected
minutes of the study preset (`study.plan_minutes`), and writes outputs/benchmarks/study_plan.{md,json}. Asserts nothing.
"""
import json, os, sys, tempfile
from pathlib import Path
sys.path = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
from smidilab.core import markdown_table, write_json
from smidilab.study import make_study_config, run_study, plan_minutes, machine_description

REPO = Path(__file__).resolve().parents[1]
ARMS = ['paper', 'compact', 'scratch']
SMALL = dict(chorales=12, palestrina=4, folk=8, riffs=6, test_per_piece=2, subset_pieces=2, eval_samples=2)
BASE_FIXED_MINUTES = 14  # the study's data (about 3 min), model loads and scoring ten rows, measured in phase 1 (24_study)


def _pieces(cfg) -> int: return cfg.chorales + cfg.palestrina + cfg.folk + cfg.riffs


def one_study(budget: int, folder: Path) -> dict:
    "Train and score the three arms at `budget` tokens each; per arm: tokens, training and scoring seconds; fixed costs"
    cfg = make_study_config('study', out_dir=str(folder), budget_tokens=budget, arms=ARMS, **SMALL)
    res = run_study(cfg)
    scored = {r: v for r, v in res['rows'].items() if r in ARMS}
    arms = {a: {'tokens': res['arms'][a]['tokens'], 'train_s': res['arms'][a]['train_seconds'],
                'score_s': scored[a]['score_minutes'] * 60, 'scored_tokens': scored[a]['tokens_per_note'] * scored[a]['notes']}
            for a in ARMS}
    baselines = json.loads((folder/'scores'/'baselines.json').read_text())
    s = res['samples']
    return arms | {'_fixed': {'data_s': res['data_seconds'], 'baselines_s': next(iter(baselines.values()))['seconds'],
                              'sampling_s': s['seconds'], 'samples': len(s['samples']), 'max_new_tokens': s['max_new_tokens'],
                              'sampled_arm': s['settings']['arm'], 'pieces': _pieces(cfg)}}


def main(quick: bool = False):
    budgets = [3000] if quick else [3000, 12000]
    with tempfile.TemporaryDirectory() as d:
        runs = [one_study(b, Path(d)/f'b{b}') for b in budgets]
    rows, ms = [], {}
    for a in ARMS:
        lo, hi = runs[0][a], runs[-1][a]
        slope = (hi['train_s'] - lo['train_s']) / (hi['tokens'] - lo['tokens']) * 1000 if len(runs) > 1 else None
        ms[a] = slope
        fixed = lo['train_s'] - (slope or 0) * lo['tokens'] / 1000
        rows.append([a, lo['tokens'], lo['train_s'], hi['tokens'], hi['train_s'], slope, fixed,
                     1000 * hi['score_s'] / hi['scored_tokens']])
    head = ['arm', 'tokens (small)', 'train s (small)', 'tokens (large)', 'train s (large)', 'ms per trained token',
            'fixed s per arm', 'scoring ms per token']
    table = markdown_table(head, rows, [None, '{:,}', '{:.0f}', '{:,}', '{:.0f}', '{:.2f}', '{:.0f}', '{:.3f}'])
    f, study = runs[-1]['_fixed'], make_study_config('study')
    baselines_min = f['baselines_s'] * _pieces(study) / f['pieces'] / 60
    lines = [f'Study step costs on {machine_description()}', '', table, '',
             f"Fixed costs: the winning arm (`{f['sampled_arm']}`) wrote {f['samples']} samples of at most {f['max_new_tokens']} "
             f"tokens in {f['sampling_s']:.0f} s; the baselines took {f['baselines_s']:.0f} s on {f['pieces']} pieces (about "
             f"{baselines_min:.1f} min on the study's {_pieces(study)}); this corpus's data took {f['data_s']:.0f} s."]
    if not quick:
        lora = max(ms['paper'], ms['compact'])
        fixed = BASE_FIXED_MINUTES + f['sampling_s'] / 60 + baselines_min
        plan = plan_minutes(study, lora_ms=lora, scratch_ms=ms['scratch'], fixed_minutes=fixed)
        lines += ['', f"study preset at {study.budget_tokens:,} tokens per arm: about "
                      f"{plan['total']:.0f} minutes ({plan['training']:.0f} training at {lora:.2f} / {ms['scratch']:.2f} ms per "
                      f"token for LoRA / scratch, plus {plan['fixed']:.0f} fixed: {BASE_FIXED_MINUTES} for data, loading and "
                      f"scoring, {f['sampling_s'] / 60:.1f} sampling, {baselines_min:.1f} baselines)"]
    print('\n'.join(lines))
    out = REPO/'outputs'/'benchmarks'
    out.mkdir(parents=True, exist_ok=True)
    (out/'study_plan.md').write_text('\n'.join(lines) + '\n')
    write_json(out/'study_plan.json', {'runs': dict(zip(map(str, budgets), runs)), 'ms_per_token': ms})


if __name__ == '__main__':
    main(quick='--quick' in sys.argv)
