"""QLoRA training throughput of the `paper` preset's model (Llama-2-7B architecture, random weights: no download).

For each backend and sequence length: tokens/s, seconds per optimizer step, peak GPU memory and model-FLOPs utilisation
(MFU = (6·N + 12·L·d·T) FLOPs per token × tokens/s over the card's dense bf16 peak; N = parameters, L = layers, d = hidden
size, T = sequence length; the recomputation of gradient checkpointing is not counted, as usual for MFU).

    python benchmarks/train_gpu.py                          # qlora (+ unsloth if installed), 4K/8K/16K
    python benchmarks/train_gpu.py --seq 8192 --backends qlora lora-bf16 --steps 5
    python benchmarks/train_gpu.py --layers 4 --seq 4096    # a quick smoke test on a small card

Backends: `qlora` (bitsandbytes NF4 + double quantization, bf16 compute, PEFT LoRA r=16 on all linear layers, gradient
checkpointing: what `smidilab train --preset paper` runs), `lora-bf16` (the same LoRA on a bf16 base: no bitsandbytes
needed), `unsloth` (unsloth's 4-bit loader and kernels; needs the `gpu` extra). Sequences longer than Llama-2's 4K use
linear RoPE scaling, as the preset does. Prints a table, asserts nothing. Without CUDA it says so and exits 0.
"""
import argparse, gc, sys, tempfile, time

PEAK_BF16_TFLOPS = {'H100 SXM': 989, 'H100 NVL': 835, 'H100 PCIe': 756, 'H100': 989, 'H200': 989, 'GH200': 989,
                    'B200': 2250, 'A100': 312, 'L40S': 362, 'A10': 125, 'L4': 121, 'RTX 4090': 165, 'RTX 3090': 71}
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 tie_word_embeddings=False)
TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']

def peak_tflops(name: str) -> float | None:
    "Dense bf16 peak of the card called `name` (longest matching key), None if unknown"
    keys = sorted((k for k in PEAK_BF16_TFLOPS if all(w in name for w in k.split())), key=len, reverse=True)
    return PEAK_BF16_TFLOPS[keys[0]] if keys else None

def llama_config(seq: int, layers: int):
    "Llama-2-7B's config (optionally fewer layers), with linear RoPE scaling when `seq` exceeds 4K"
    from transformers import LlamaConfig
    config = LlamaConfig(**LLAMA2_7B | {'num_hidden_layers': layers})
    factor = max(1.0, seq / 4096)
    if factor > 1:
        config.rope_parameters = {'rope_type': 'linear', 'factor': factor, 'rope_theta': 10000.0}
        config.max_position_embeddings = int(4096 * factor)
    return config

def random_model(config):
    "The model of `config` with random bf16 weights, built directly on the GPU"
    import torch
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    with torch.device('cuda'):
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation='sdpa')

def quantize_nf4(model):
    "Replace every decoder linear layer by a bitsandbytes NF4 layer (double quantization, bf16 compute), in place"
    import torch, bitsandbytes as bnb
    for name, mod in list(model.model.layers.named_modules()):
        for child, lin in list(mod.named_children()):
            if isinstance(lin, torch.nn.Linear):
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=False, compute_dtype=torch.bfloat16,
                                      compress_statistics=True, quant_type='nf4', device='cuda')
                q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type='nf4').to('cuda')
                setattr(mod, child, q)
    model.is_loaded_in_4bit = True
    torch.cuda.empty_cache()
    return model

def with_lora(model):
    "PEFT LoRA r=16 alpha=16 on all linear layers, gradient checkpointing on"
    from peft import LoraConfig, get_peft_model
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
    model.enable_input_require_grads()
    return get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS,
                                            task_type='CAUSAL_LM'))

def unsloth_model(config, seq: int):
    "unsloth's 4-bit model + LoRA, loaded from a random checkpoint written to a temporary folder"
    from unsloth import FastLanguageModel
    folder = tempfile.mkdtemp(prefix='llama2-random-')
    model = random_model(config); model.save_pretrained(folder); del model; gc.collect()
    model, _ = FastLanguageModel.from_pretrained(model_name=folder, max_seq_length=seq, load_in_4bit=True, dtype=None)
    return FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS,
                                            use_gradient_checkpointing='unsloth', random_state=0)

def build(backend: str, seq: int, layers: int):
    config = llama_config(seq, layers)
    if backend == 'unsloth': return unsloth_model(config, seq)
    model = random_model(config)
    return with_lora(quantize_nf4(model) if backend == 'qlora' else model)

def n_params(model) -> int:
    "Parameters of the base model as trained in bf16 (4-bit weights counted by their logical size)"
    return sum(p.quant_state.shape.numel() if getattr(p, 'quant_state', None) is not None else p.numel()
               for p in model.parameters())

def time_steps(model, seq: int, batch: int, steps: int) -> float:
    "Seconds per optimizer step (mean over `steps` after one warm-up step) on random tokens"
    import torch
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    ids = torch.randint(0, 32000, (batch, seq), device='cuda')
    def step():
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    step(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps

def measure(backend: str, seq: int, layers: int, batch: int, steps: int, peak: float | None) -> dict:
    import torch
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    try:
        model = build(backend, seq, layers)
        n = n_params(model)
        secs = time_steps(model, seq, batch, steps)
    except torch.cuda.OutOfMemoryError:
        return {'backend': backend, 'seq': seq, 'error': 'out of memory'}
    finally:
        model = None; gc.collect(); torch.cuda.synchronize()
    tokens_s = batch * seq / secs
    flops_token = 6 * n + 12 * layers * LLAMA2_7B['hidden_size'] * seq
    mfu = 100 * flops_token * tokens_s / (peak * 1e12) if peak else float('nan')
    return {'backend': backend, 'seq': seq, 'tokens/s': tokens_s, 's/step': secs,
            'peak GiB': torch.cuda.max_memory_allocated() / 2**30, 'MFU %': mfu, 'params B': n / 1e9}

def available(backend: str) -> str | None:
    "None if `backend` can run here, else why not"
    import importlib.util
    need = {'qlora': 'bitsandbytes', 'unsloth': 'unsloth', 'lora-bf16': 'peft'}[backend]
    return None if importlib.util.find_spec(need) else f'{need} not installed'

def print_table(rows: list[dict], device: str):
    cols = ['backend', 'seq', 'tokens/s', 's/step', 'peak GiB', 'MFU %', 'params B']
    print(f'\nQLoRA training throughput, Llama-2-7B architecture (random weights) on {device}\n')
    print('| ' + ' | '.join(cols) + ' |'); print('|' + '---|' * len(cols))
    for r in rows:
        if 'error' in r: print(f"| {r['backend']} | {r['seq']} | {r['error']} |" + ' |' * (len(cols) - 3)); continue
        print('| ' + ' | '.join(f'{r[c]:,.0f}' if c == 'tokens/s' else f'{r[c]:.2f}' if isinstance(r[c], float)
                                 else str(r[c]) for c in cols) + ' |')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seq', type=int, nargs='+', default=[4096, 8192, 16384], help='sequence lengths')
    ap.add_argument('--backends', nargs='+', default=['qlora', 'unsloth'], choices=['qlora', 'lora-bf16', 'unsloth'])
    ap.add_argument('--layers', type=int, default=32, help='decoder layers (32 = Llama-2-7B)')
    ap.add_argument('--batch', type=int, default=1, help='sequences per step')
    ap.add_argument('--steps', type=int, default=3, help='timed steps (after one warm-up step)')
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print('train_gpu.py measures GPU training throughput and needs CUDA; no GPU here, nothing measured.')
        return 0
    device = torch.cuda.get_device_name()
    peak = peak_tflops(device)
    print(f'{device}: dense bf16 peak {peak or "unknown"} TFLOP/s; torch {torch.__version__}')
    rows = []
    for backend in args.backends:
        if (why := available(backend)): print(f'skipping {backend}: {why}'); continue
        for seq in args.seq:
            rows.append(measure(backend, seq, args.layers, args.batch, args.steps, peak)); print(rows[-1], flush=True)
    print_table(rows, device)
    return 0

if __name__ == '__main__': sys.exit(main())
