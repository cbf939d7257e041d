"Training end to end on the tiny random Llama: loss drops, completion-only labels, reload, RoPE, QLoRA, DDP, kill+resume"
import json, os, subprocess, sys
from pathlib import Path
os.environ['HF_HUB_OFFLINE'] = '1'
import pytest
import torch
torch.set_num_threads(2)
from smidilab.core import SmidiError
from smidilab.train import (TrainConfig, make_config, prepare_run, train, load_run, load_model, build_trainer,
                            run_tokenizer, write_toy_dataset, check_config, load_unsloth)
from smidilab.explore import read_metrics

NB = Path(__file__).parents[1]/'nbs'/'12_train.ipynb'
STEPS = 6

def tiny(tmp, name, **kw):
    "A prepared tiny run in tmp/name on the shared toy dataset"
    return prepare_run(make_config('tiny', **({'out_dir': str(tmp/name), 'max_steps': STEPS, 'save_steps': 2} | kw)))

@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    return str(write_toy_dataset(tmp_path_factory.mktemp('data')/'toy', n=24))

@pytest.fixture(scope='module')
def runs(tmp_path_factory): return tmp_path_factory.mktemp('runs')

@pytest.fixture(scope='module')
def trained(runs, toy):
    "(config, trainer) of an uninterrupted tiny run with RoPE scaling x2"
    cfg = tiny(runs, 'ref', dataset=toy, rope_factor=2.0)
    return cfg, train(cfg)

def _ids(tok, text='p60:v80:d96:t96 p62:v80:d96:t96'): return tok(text, return_tensors='pt').input_ids

def test_run_folder_and_loss(trained):
    "The run folder holds what generation needs, and the loss went down"
    cfg, _ = trained
    run = Path(cfg.out_dir)
    for name in ('adapter/adapter_model.safetensors', 'adapter/adapter_config.json', 'adapter/config.json',
                 'tokenizer/tokenizer.json', 'run_config.json', 'metrics.csv', 'loss.png', 'base/config.json'):
        assert (run/name).is_file(), name
    rows = read_metrics(run/'metrics.csv')
    assert [r['step'] for r in rows] == list(range(STEPS + 1))
    assert rows[-1]['eval_loss'] < rows[0]['eval_loss']
    losses = [r['loss'] for r in rows if r['loss'] is not None]
    assert sum(losses[-2:]) < sum(losses[:2])

def test_reload_same_logits(trained):
    "The run reloaded from its folder gives the trained model's logits"
    cfg, trainer = trained
    model, tok = load_run(cfg.out_dir)
    assert model.config.use_cache  # sampling from a reloaded run uses the KV cache
    ids = _ids(tok)
    trainer.model.eval()
    with torch.no_grad(): expected, got = trainer.model(ids).logits, model(ids).logits
    torch.testing.assert_close(got, expected)
    with torch.no_grad(), model.disable_adapter(): base = model(ids).logits
    assert not torch.allclose(base, got)  # the adapter changed something

def test_rope_saved(trained):
    "Linear RoPE scaling is in the run config, the adapter's model config, and the reloaded model"
    cfg, _ = trained
    rope = {'rope_type': 'linear', 'factor': 2.0, 'rope_theta': 10000.0}
    assert json.loads((Path(cfg.out_dir)/'run_config.json').read_text())['rope_parameters'] == rope
    saved = json.loads((Path(cfg.out_dir)/'adapter'/'config.json').read_text())
    assert saved['rope_parameters'] == rope and saved['max_position_embeddings'] == 4096
    model, _ = load_run(cfg.out_dir)
    assert model.config.rope_parameters == rope
    assert TrainConfig.load(Path(cfg.out_dir)/'run_config.json') == cfg

def test_completion_only_labels(trained):
    "Only the answer and the EOS after it carry labels; the prompt is masked with -100"
    cfg, _ = trained
    tok = run_tokenizer(cfg)
    model, peft_config = load_model(cfg, tok)
    trainer = build_trainer(cfg, model, tok, peft_config)
    from datasets import load_from_disk
    ex = load_from_disk(cfg.dataset)['train'][0]
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels, ids = batch['labels'][0], batch['input_ids'][0]
    assert tok.decode(labels[labels != -100]) == ex['completion'] + tok.eos_token
    n_prompt = len(tok(ex['prompt']).input_ids)
    assert (labels[:n_prompt] == -100).all() and (labels[n_prompt:] != -100).all()
    assert tok.decode(ids[:n_prompt]) == ex['prompt']

def test_qlora_on_cpu(runs, toy):
    "QLoRA (NF4 + double quantization, gradient checkpointing) trains the tiny model on CPU, reloads 4-bit, same logits"
    import bitsandbytes as bnb
    cfg = tiny(runs, 'qlora', dataset=toy, backend='qlora', gradient_checkpointing=True, max_steps=2, save_steps=0)
    trainer = train(cfg)
    q = [p for p in trainer.model.parameters() if isinstance(p, bnb.nn.Params4bit)]
    assert len(q) == 14 and q[0].quant_type == 'nf4' and q[0].quant_state.nested  # 7 linears x 2 layers; nested = double quant
    rows = read_metrics(Path(cfg.out_dir)/'metrics.csv')
    assert all(r['loss'] is None or r['loss'] == r['loss'] for r in rows) and rows[-1]['loss'] is not None
    model, tok = load_run(cfg.out_dir)
    trainer.model.eval()
    # bitsandbytes' CPU backend repacks 4-bit weights for its inference kernel after training: equal up to kernel rounding
    with torch.no_grad():
        torch.testing.assert_close(model(_ids(tok)).logits, trainer.model(_ids(tok)).logits, atol=1e-2, rtol=1e-2)

CRASH = """
import os, sys
from transformers import TrainerCallback
from smidilab.train import TrainConfig, train
class Crash(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step >= int(sys.argv[2]): os._exit(17)
train(TrainConfig.load(sys.argv[1]), callbacks=[Crash()])
"""

def test_kill_and_resume(trained, runs, toy):
    "A run killed after its step-4 checkpoint resumes to the same step count and loss curve as an uninterrupted run"
    ref_cfg, ref = trained
    cfg = tiny(runs, 'crash', dataset=toy, rope_factor=2.0)
    p = subprocess.run([sys.executable, '-c', CRASH, str(Path(cfg.out_dir)/'run_config.json'), '4'],
                       capture_output=True, text=True)
    assert p.returncode == 17, p.stderr[-2000:]
    assert not (Path(cfg.out_dir)/'adapter').exists()
    with pytest.raises(SmidiError, match='resume=True'): check_config(cfg)
    resumed = train(TrainConfig(**cfg.to_dict() | {'resume': True}))
    assert resumed.state.global_step == ref.state.global_step == STEPS
    got, want = read_metrics(Path(cfg.out_dir)/'metrics.csv'), read_metrics(Path(ref_cfg.out_dir)/'metrics.csv')
    assert [r['step'] for r in got] == [r['step'] for r in want]
    for g, w in zip(got, want):
        for k in ('loss', 'eval_loss'):
            assert (g[k] is None) == (w[k] is None) and (g[k] is None or abs(g[k] - w[k]) < 1e-3), (g, w)

def _job(tmp, **config) -> tuple[int, dict]:
    "Run the train notebook as `smidilab train` does (its job section); the exit code and the executed notebook"
    from smidilab.run import run_job
    code = run_job('train', config, tmp, preset='tiny', log=False)
    return code, json.loads((tmp/'12_train.ipynb').read_text())

def _outputs(nb) -> str:
    text = lambda t: ''.join(t) if isinstance(t, list) else t
    return ''.join(text(o.get('text', '')) + o.get('evalue', '') for c in nb['cells'] if c['cell_type'] == 'code'
                   for o in c.get('outputs', []))

def test_ddp_two_processes_through_notebook(tmp_path, toy):
    "gpus=2 through the papermill notebook runs two gloo DDP ranks on CPU and writes the run folder"
    code, nb = _job(tmp_path, gpus=2, dataset=toy, out_dir=str(tmp_path/'run'), max_steps=4)
    text = _outputs(nb)
    assert code == 0 and 'rank 0 of 2' in text and 'rank 1 of 2' in text
    run_config = json.loads((tmp_path/'run'/'run_config.json').read_text())
    assert (run_config['gpus'], run_config['per_device_batch_size'], run_config['grad_accum']) == (2, 1, 1)
    assert [r['step'] for r in read_metrics(tmp_path/'run'/'metrics.csv')] == list(range(5))

def test_bad_config_fails_early_in_notebook(tmp_path):
    "A missing dataset stops the job in its config cell, with the reason"
    code, nb = _job(tmp_path, dataset=str(tmp_path/'missing'), out_dir=str(tmp_path/'run'))
    assert code == 1 and 'not found' in _outputs(nb)
    assert not (tmp_path/'run').exists()

def test_bad_configs(toy, tmp_path):
    "Unknown preset or setting, a dataset budget over max_seq_length, too long a context, unsloth on CPU: clear errors"
    with pytest.raises(SmidiError, match="unknown preset 'big'"): make_config('big')
    with pytest.raises(SmidiError, match="did you mean 'learning_rate'"): make_config('tiny', learning_rat=1e-3)
    with pytest.raises(SmidiError, match='answers would be cut'): check_config(make_config(dataset=toy, max_seq_length=16))
    with pytest.raises(SmidiError, match='raise rope_factor'):
        prepare_run(make_config(dataset=toy, out_dir=str(tmp_path/'r'), max_seq_length=4096))
    if not torch.cuda.is_available():
        with pytest.raises(SmidiError, match='CUDA'): load_unsloth(make_config(backend='unsloth'))

def test_extended_vocabulary(runs, toy):
    "extend_vocab adds whole-field tokens: their embedding rows train, and the run reloads with the same logits"
    cfg = tiny(runs, 'extended', dataset=toy, extend_vocab=True, max_steps=2, save_steps=0)
    trainer = train(cfg)
    model, tok = load_run(cfg.out_dir)
    base = run_tokenizer(make_config(dataset=toy))
    assert len(tok) > len(base) and len(tok.tokenize('p60:v80:d96:t96')) < len(base.tokenize('p60:v80:d96:t96'))
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    ids = _ids(tok)
    trainer.model.eval()
    with torch.no_grad(): torch.testing.assert_close(model(ids).logits, trainer.model(ids).logits)
