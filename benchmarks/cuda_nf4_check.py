"""CUDA check of TransformersLLM: nf4 (double quant) vs bf16 on a GPU.

Random weights in SmolLM2-135M's shape and a 1.1B Llama shape (TinyLlama's), SmolLM2's
real tokenizer. Run on a GPU machine with ``python benchmarks/cuda_nf4_check.py CKPT``
(CKPT: config + tokenizer files, no weights); results in
benchmarks/results/cuda_nf4_h200.json.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import bitsandbytes as bnb
import torch
import transformers

sys.path.insert(0, "src")
from langchain_setraf import TransformersLLM, get_model_cache, memory_snapshot

out = {
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "gpu": torch.cuda.get_device_name(0),
}

out["bitsandbytes"] = bnb.__version__
base = Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/ckpt")  # config+tokenizer only
shapes = {
    "smollm2-135m": {},
    "llama-1.1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    ),
}
results = []
for name, over in shapes.items():
    d = Path("/tmp/ck-" + name)
    d.mkdir(exist_ok=True)
    for f in base.iterdir():
        shutil.copy(f, d)
    cfg = transformers.AutoConfig.from_pretrained(d)
    for k, v in over.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    m = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    m.save_pretrained(d)
    del m
    for mode in ("nf4", "bf16", "auto"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        llm = TransformersLLM(
            model=str(d), quantization=mode, device_map="cuda", temperature=0, max_tokens=64
        )
        t0 = time.perf_counter()
        llm.invoke("Hi", max_tokens=1)
        load = time.perf_counter() - t0
        with llm._lease(lock=False) as h:
            info = h.info
            model = h.model
            n4 = sum(isinstance(x, bnb.nn.Linear4bit) for x in model.modules())
            nested = all(
                x.weight.quant_state.nested
                for x in model.modules()
                if isinstance(x, bnb.nn.Linear4bit)
            )
            qt = sorted(
                {x.weight.quant_type for x in model.modules() if isinstance(x, bnb.nn.Linear4bit)}
            )
        del model, h
        alloc_loaded = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        r = llm.generate(["The capital of France is"])
        g = time.perf_counter() - t0
        gi = r.generations[0][0].generation_info
        toks = gi["completion_tokens"]
        s1 = "".join(llm.stream("Resistivity", max_tokens=8))
        s2 = llm.invoke("Resistivity", max_tokens=8)
        peak = torch.cuda.max_memory_allocated()
        llm.release()
        del r
        torch.cuda.synchronize()
        row = dict(
            shape=name,
            mode=mode,
            resolved=info.mode,
            device=info.device,
            dtype=info.dtype,
            load_s=round(load, 2),
            footprint_mb=round(info.footprint_bytes / 2**20, 1),
            linear4bit=n4,
            double_quant=nested,
            quant_types=qt,
            gpu_alloc_loaded_mb=round(alloc_loaded / 2**20, 1),
            gpu_peak_mb=round(peak / 2**20, 1),
            gpu_alloc_after_release_mb=round(torch.cuda.memory_allocated() / 2**20, 1),
            tokens=toks,
            tokens_per_s=round(toks / g, 1),
            stream_equals_invoke=s1 == s2,
            host_rss_mb=round(memory_snapshot().rss / 2**20),
        )
        print(json.dumps(row), flush=True)
        results.append(row)
out["results"] = results
out["cache_loaded_after"] = len(get_model_cache())
Path(os.environ.get("OUT", "/tmp"), "cuda_nf4.json").write_text(json.dumps(out, indent=1))
print("OK")
