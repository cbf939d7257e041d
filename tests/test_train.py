"Training end to end on the tiny random Llama: loss drops, completion-only labels, reload, RoPE, QLoRA, DDP, kill+resume"
import json, os, subprocess, sys
from pathlib import Path
os.environ['HF_HUB_OFFLINE'] = '1'
import pytest
import torch
torch.set_num_threads(2)
from smidilab.core import SmidiError
from smidilab.model import (TrainConfig, make_config, load_model, run_tokenizer, write_toy_dataset, check_config,
                            load_unsloth)
from smidilab.train import prepare_run, train, load_run, load_start, build_trainer
from smidilab.explore import read_metrics

NB = Path(__file__).parents[1]/'nbs'/'17_train.ipynb'
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
from smidilab.model import TrainConfig
from smidilab.train import train
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
    return code, json.loads((tmp/'17_train.ipynb').read_text())

def _outputs(nb) -> str:
    text = lambda t: ''.join(t) if isinstance(t, list) else t
    return ''.join(text(o.get('text', '')) + o.get('evalue', '') for c in nb['cells'] if c['cell_type'] == 'code'
                   for o in c.get('outputs', []))

def test_ddp_two_processes_through_notebook(tmp_path, toy):
    "gpus=2 through the papermill notebook runs two gloo DDP ranks on CPU, shows legible progress and writes the run folder"
    code, nb = _job(tmp_path, gpus=2, dataset=toy, out_dir=str(tmp_path/'run'), max_steps=4)
    text = _outputs(nb)
    assert code == 0 and 'rank 0 of 2' in text and 'rank 1 of 2' in text
    # legible progress: the plan, step lines with loss and ETA, evaluations; no tqdm bars, no raw log dicts
    assert 'train: 4 steps of 2 sequences (1 per process x 1 accumulated x 2 processes)' in text
    assert 'train: step 4/4 (100%), loss ' in text and ', ETA ' in text and 'eval: step 4/4, validation loss' in text
    assert '%|' not in text and "{'loss'" not in text and 'it/s]' not in text
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

LAUNCH = """
import sys
from smidilab.model import make_config
from smidilab.train import run_training
run_training(make_config('tiny', **eval(sys.argv[1])))
"""

def _free_port() -> int:
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _launch_all(settings: list, timeout: float = 420) -> list[str]:
    "Run `run_training` once per settings dict, all at once, each in its own process group; their outputs (killed at `timeout`)"
    import signal
    procs = [subprocess.Popen([sys.executable, '-c', LAUNCH, repr(s)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True) for s in settings]
    try: outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert all(p.returncode == 0 for p in procs), '\n=====\n'.join(o[-3000:] for o in outs)
    return outs

def _weights(path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(path))

def _assert_same_weights(a: dict, b: dict, atol: float):
    assert set(a) == set(b) and a
    for k in a: torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)

def test_two_machines_on_loopback_train_what_one_process_trains(toy, tmp_path):
    "Two launchers (machine_rank 0 and 1, one gloo process each, 127.0.0.1, a free port) step together and save the adapter one process with the same global batch saves"
    common = dict(dataset=toy, max_steps=3, save_steps=0, global_batch_size=2, max_device_batch_size=1, progress_seconds=0,
                  num_threads=1)
    port = _free_port()
    outs = _launch_all([common | dict(out_dir=str(tmp_path/f'machine{r}'), num_machines=2, machine_rank=r,
                                      main_process_port=port) for r in (0, 1)])
    assert 'rank 0 of 2' in outs[0] and 'rank 1 of 2' in outs[1] and 'train: step 3/3 (100%)' in outs[0]
    single = train(tiny(tmp_path, 'single', **common | dict(max_device_batch_size=2)))
    assert single.args.per_device_train_batch_size == 2
    want = _weights(tmp_path/'single'/'adapter'/'adapter_model.safetensors')
    for r in (0, 1):  # each machine saved the run on its own disk, and the second one stepped to the end too
        _assert_same_weights(_weights(tmp_path/f'machine{r}'/'adapter'/'adapter_model.safetensors'), want, atol=1e-6)
        assert [x['step'] for x in read_metrics(tmp_path/f'machine{r}'/'metrics.csv')] == [0, 1, 2, 3]
    assert any(float(v.abs().max()) > 0 for k, v in want.items() if 'lora_B' in k)  # the adapter trained (B starts at 0)

def test_fsdp_full_fine_tuning_on_two_cpu_ranks(toy, tmp_path):
    "backend 'full' with fsdp: torch FSDP2 shards the tiny model over 2 gloo ranks on CPU; the gathered model is the one-process result"
    common = dict(dataset=toy, backend='full', learning_rate=1e-3, max_steps=3, save_steps=0, global_batch_size=2,
                  progress_seconds=0, num_threads=1)
    out, = _launch_all([common | dict(out_dir=str(tmp_path/'fsdp'), fsdp=True, gpus=2, max_device_batch_size=1)])
    assert 'rank 0 of 2' in out and 'rank 1 of 2' in out and 'train: step 3/3 (100%)' in out
    train(tiny(tmp_path, 'single', **common))
    got, want = _weights(tmp_path/'fsdp'/'model'/'model.safetensors'), _weights(tmp_path/'single'/'model'/'model.safetensors')
    _assert_same_weights(got, want, atol=1e-6)
    base = _weights(tmp_path/'single'/'base'/'model.safetensors')
    assert not torch.equal(got['model.layers.0.mlp.up_proj.weight'], base['model.layers.0.mlp.up_proj.weight'])  # every weight trained
    assert not (tmp_path/'fsdp'/'model'/'training_args.bin').exists()
    model, _ = load_run(tmp_path/'fsdp')
    assert not hasattr(model, 'disable_adapter') and model.config.use_cache

def test_random_init_full_fine_tuning(toy, runs):
    "init 'random' trains a freshly initialised model of the base's architecture (the from-scratch arm), and it reloads"
    from smidilab.model import write_tiny_base, base_tokenizer
    pretrained = write_tiny_base(make_config(out_dir=str(runs/'pretrained')), base_tokenizer('smollm2'))  # a base folder, seed 0
    cfg = tiny(runs, 'scratch', dataset=toy, base_model=str(pretrained), backend='full', init='random', seed=3, max_steps=2,
               save_steps=0)
    trainer = train(cfg)
    weight = lambda m: m.model.layers[0].mlp.up_proj.weight.detach()
    start, base = load_start(cfg.out_dir), _weights(pretrained/'model.safetensors')['model.layers.0.mlp.up_proj.weight']
    assert start.config.num_hidden_layers == 2 and not torch.equal(weight(start), base)  # the architecture, not the weights
    model, tok = load_run(cfg.out_dir)
    assert not torch.equal(weight(model), weight(start))  # trained
    trainer.model.eval()
    with torch.no_grad(): torch.testing.assert_close(model(_ids(tok)).logits, trainer.model(_ids(tok)).logits)
