"""What the study's arms cost on this machine, and how long `smidilab run --preset study` will take here.

    .venv/bin/python benchmarks/study_plan.py            # about 12 minutes on 2 quiet cores
    .venv/bin/python benchmarks/study_plan.py --quick    # one small budget: per-arm wall time only

Runs the study's own code (nbs/17_study.ipynb: the `study` preset's model, train preset and scoring) on a small corpus
at two token budgets, for three arms that bracket the costs: `paper` (LoRA, ~1,000-token sequences), `compact` (LoRA
with whole-field tokens, ~400-token sequences) and `scratch` (every weight trained). The difference of the two runs'
training times over the difference of their tokens is the cost per trained token (loading and evaluations cancel out);
the rest is the fixed cost of an arm. Scoring is timed per scored token. Prints a Markdown table and the expected minutes
of the study preset (`study.plan_minutes`), and writes outputs/benchmarks/study_plan.{md,json}. Asserts nothing.
"""
import json, os, sys, tempfile, time
from pathlib import Path
sys.path = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
from smidilab.core import markdown_table, write_json
from smidilab.study import make_study_config, run_study, plan_minutes, machine_description

REPO = Path(__file__).resolve().parents[1]
ARMS = ['paper', 'compact', 'scratch']
SMALL = dict(chorales=12, palestrina=4, folk=8, riffs=6, test_per_piece=2, subset_pieces=2, eval_samples=2)


def one_study(budget: int, folder: Path) -> dict:
    "Train and score the three arms at `budget` tokens each; per arm: tokens, training seconds, scoring seconds"
    cfg = make_study_config('study', out_dir=str(folder), budget_tokens=budget, arms=ARMS, **SMALL)
    res = run_study(cfg)
    scored = {r: v for r, v in res['rows'].items() if r in ARMS}
    return {a: {'tokens': res['arms'][a]['tokens'], 'train_s': res['arms'][a]['train_seconds'],
                'score_s': scored[a]['score_minutes'] * 60, 'scored_tokens': scored[a]['tokens_per_note'] * scored[a]['notes']}
            for a in ARMS}


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
    lines = [f'Study step costs on {machine_description()}', '', table]
    if not quick:
        lora = max(ms['paper'], ms['compact'])
        plan = plan_minutes(make_study_config('study'), lora_ms=lora, scratch_ms=ms['scratch'])
        lines += ['', f"study preset at {make_study_config('study').budget_tokens:,} tokens per arm: about "
                      f"{plan['total']:.0f} minutes ({plan['training']:.0f} training at {lora:.2f} / {ms['scratch']:.2f} ms per "
                      f"token for LoRA / scratch, plus {plan['fixed']:.0f} fixed)"]
    print('\n'.join(lines))
    out = REPO/'outputs'/'benchmarks'
    out.mkdir(parents=True, exist_ok=True)
    (out/'study_plan.md').write_text('\n'.join(lines) + '\n')
    write_json(out/'study_plan.json', {'runs': dict(zip(map(str, budgets), runs)), 'ms_per_token': ms})


if __name__ == '__main__':
    main(quick='--quick' in sys.argv)
