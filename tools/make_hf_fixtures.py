#!/usr/bin/env python3
"""tools/make_hf_fixtures.py OUT_DIR: parity fixtures from implementations we did not write.

Builds two tiny random models with Hugging Face transformers, in float64 on the CPU:
  hf_gpt_neox.safetensors  GPTNeoXForCausalLM as Pythia configures it (parallel residual,
                           rotary_pct 0.25, untied embed_out, GELU MLP; d_model 32, 2 layers,
                           4 heads of 8, MLP width 64, vocab 64)
  hf_mamba.safetensors     MambaForCausalLM (d_model 16, 2 layers, d_state 4, d_conv 4, vocab 64;
                           its torch path, no CUDA kernels; residual_in_fp32 off, as our f64
                           model keeps the residual in its own dtype. Its RMSNorm still rounds
                           through float32, so the Mamba agrees to float32's precision only)
(and, from mamba_folder below, transformers model folders with a tokenizer: hf_mamba_folder/,
hf_mamba_sharded/ and hf_mamba_folder.expected.safetensors) and stores, for a batch of random
ids (2, 16): every weight under transformers' name, the ids
("fixture.input_ids", int32), the logits ("fixture.logits"), the loss of next-token prediction
("fixture.loss": cross-entropy of logits[:, :-1] against ids[:, 1:], mean) and every
parameter's gradient of that loss ("grad.<name>"). The metadata records the config and the
versions of torch and transformers that made the file. tests/test_hf_parity.cpp checks, on the
CPU with no Python, that our models reproduce the logits and loss (1e-5 relative) and the
gradients (1e-4). Initialisation uses a larger std than the defaults (0.2), so that attention
and the scan are far from their trivial regimes.
"""
import json
import copy
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file


def finish(model, cfg, name, out_dir, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("A_log") or n.endswith(".D") or "norm" in n or "layernorm" in n:
                p.add_(0.1 * torch.randn_like(p))  # keep their structure, break the symmetry
            else:
                p.copy_(0.2 * torch.randn_like(p))
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    logits = model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    loss.backward()
    tensors = {}
    seen = set()
    for n, p in model.named_parameters():  # tied weights appear once
        if id(p) in seen:
            continue
        seen.add(id(p))
        tensors[n] = p.detach().contiguous()
        tensors["grad." + n] = p.grad.detach().contiguous()
    tensors["fixture.input_ids"] = ids.to(torch.int32)
    tensors["fixture.logits"] = logits.detach().contiguous()
    tensors["fixture.loss"] = loss.detach().reshape(1)
    meta = {"config": json.dumps(cfg.to_dict(), default=str), "torch": torch.__version__,
            "transformers": transformers.__version__, "made_by": "tools/make_hf_fixtures.py"}
    path = os.path.join(out_dir, name)
    save_file(tensors, path, metadata=meta)
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")


def mamba_folder(out_dir):
    """hf_mamba_folder/ and hf_mamba_sharded/: a float32 MambaForCausalLM saved by save_pretrained
    (one file, and sharded at 20 KB), with the BPE tokenizer of tests/fixtures/bpe_tokenizer.json
    (tools/make_tokenizer_fixture.py) as its tokenizer.json and a vocabulary of that tokenizer's
    size (801: not a multiple of 8). hf_mamba_folder.expected.safetensors records, computed by
    transformers in float32: a batch of ids (2, 8), its logits, the next-token loss and every
    parameter's gradient (as finish() does), the prompt's ids as the tokenizer encodes
    PROMPT, and the ids of greedy generation (model.generate, do_sample False, max_new_tokens 16;
    it stops at <|endoftext|>), with the smallest gap between the top two logits over the
    generated steps (so a float32 difference of 1e-6 between implementations cannot flip one)."""
    from transformers import PreTrainedTokenizerFast
    tok_path = os.path.join(out_dir, "bpe_tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=tok_path)
    vocab = len(tok)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.set_default_dtype(torch.float32)
    cfg = transformers.MambaConfig(
        vocab_size=vocab, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=4,
        time_step_rank=2, use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5, residual_in_fp32=True,
        tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    prompt = "And God said, Let there be light"
    for seed in range(3, 40):  # the first seed whose greedy steps all have a clear winner
        torch.manual_seed(seed)
        model = transformers.MambaForCausalLM(cfg).float().eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("A_log") or n.endswith(".D") or "norm" in n:
                    p.add_(0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.3 * torch.randn_like(p))
        prompt_ids = tok(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(prompt_ids, max_new_tokens=16, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
        gaps = [float((s[0].topk(2).values[0] - s[0].topk(2).values[1])) for s in out.scores]
        if min(gaps) > 1e-3:
            break
    greedy = out.sequences[0, prompt_ids.shape[1]:]
    for name, shard in (("hf_mamba_folder", None), ("hf_mamba_sharded", "20KB")):
        d = os.path.join(out_dir, name)
        if shard:
            model.save_pretrained(d, max_shard_size=shard)
        else:
            model.save_pretrained(d)
        shutil.copyfile(tok_path, os.path.join(d, "tokenizer.json"))
    # the same weights in bfloat16, as save_pretrained writes them (no tokenizer: the load is the test)
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(os.path.join(out_dir, "hf_mamba_bf16"))
    ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(seed))
    logits = model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
    loss.backward()
    tensors = {"grad." + n: p.grad.detach().contiguous() for n, p in model.named_parameters()}
    tensors["fixture.input_ids"] = ids.to(torch.int32)
    tensors["fixture.logits"] = logits.detach().contiguous()
    tensors["fixture.loss"] = loss.detach().reshape(1)
    tensors["fixture.prompt_ids"] = prompt_ids[0].to(torch.int32).contiguous()
    tensors["fixture.greedy_ids"] = greedy.to(torch.int32).contiguous()
    meta = {"prompt": prompt, "greedy_text": tok.decode(greedy), "min_top2_gap": f"{min(gaps):.6g}",
            "seed": str(seed), "torch": torch.__version__, "transformers": transformers.__version__,
            "made_by": "tools/make_hf_fixtures.py"}
    path = os.path.join(out_dir, "hf_mamba_folder.expected.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"{path}: seed {seed}, vocab {vocab}, greedy {greedy.tolist()} = {tok.decode(greedy)!r}, "
          f"min top-2 gap {min(gaps):.4g}, loss {loss.item():.6f}")


def half_dtypes(out_dir):
    """half_dtypes.safetensors: BF16 and F16 tensors of awkward values (the largest, the smallest
    subnormal, negative zero, inf, -inf) and, as F32, the float32 values they stand for."""
    vals = [1.0, -2.5, 3.140625, 0.1, -0.0, 65504.0, 2.0 ** -24, 2.0 ** -14, 1e-3, float("inf"), float("-inf")]
    t = torch.tensor(vals, dtype=torch.float32)
    tensors = {"bf16": t.to(torch.bfloat16), "f16": t.to(torch.float16),
               "bf16_as_f32": t.to(torch.bfloat16).to(torch.float32), "f16_as_f32": t.to(torch.float16).to(torch.float32)}
    path = os.path.join(out_dir, "half_dtypes.safetensors")
    save_file(tensors, path, metadata={"torch": torch.__version__, "made_by": "tools/make_hf_fixtures.py"})
    print(f"{path}: {os.path.getsize(path)} bytes")


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    neox = transformers.GPTNeoXConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=64, layer_norm_eps=1e-5,
        use_parallel_residual=True, hidden_act="gelu", tie_word_embeddings=False, attention_dropout=0.0,
        hidden_dropout=0.0, attention_bias=True)
    neox._attn_implementation = "eager"
    finish(transformers.GPTNeoXForCausalLM(neox).double().eval(), neox, "hf_gpt_neox.safetensors", out_dir, 1)
    mamba = transformers.MambaConfig(
        vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2, conv_kernel=4,
        time_step_rank=2, use_bias=False, use_conv_bias=True, layer_norm_epsilon=1e-5, residual_in_fp32=False,
        tie_word_embeddings=True)
    finish(transformers.MambaForCausalLM(mamba).double().eval(), mamba, "hf_mamba.safetensors", out_dir, 2)
    mamba_folder(out_dir)
    half_dtypes(out_dir)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
