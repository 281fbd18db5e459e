"""How fast the local model writes on this machine's CPU: tokens per second and time to the
first token, for Brook's default model and the ones it was chosen against.

    .venv/bin/python benchmarks/local_speed.py [--tokens 128] [--repeats 3] [--prompt-tokens 40]
        [--threads N] [--models qwen3-0.6b,qwen2.5-0.5b-instruct]

No weights are downloaded: each model is built from its own `config.json` (the values are
copied below from the model's Hugging Face repository) with random weights, in float32 on
the CPU, as Brook runs it there (`providers/local.py`: float32 on the CPU, torch threads =
cores - 1 unless OMP_NUM_THREADS is set). A random model does the same arithmetic per token
as the trained one (same shapes, same layers, same cache), so its speed is the trained
model's speed; only its words are nonsense. What it cannot show is how many tokens the
real model writes for an answer (a thinking model writes its reasoning first).

For each model: one warm-up generation, then `--repeats` generations of exactly `--tokens`
new tokens (greedy; end-of-sequence disabled) after a prompt of `--prompt-tokens` tokens
(a system prompt and a one-line question through a Qwen chat template are about 40). A
streamer records when each token comes out. It prints a table and the same figures as JSON:
the medians of the time to the first token (the prompt's prefill and one step), of the
tokens per second after the first (what the reader sees streaming), and of the tokens per
second over the whole answer. Needs the `local` extra (torch, transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

# Each model's config.json, as its repository on huggingface.co has it (what shapes the
# computation: sizes, layers, attention, vocabulary; ids and dtype left out). Qwen3.5's
# checkpoint is multimodal: this is its language model (`text_config`), which is what
# AutoModelForCausalLM loads from it and what writes text.
MODELS: dict[str, dict[str, Any]] = {
    # Brook's default until issue 14: Apache-2.0, model.safetensors 988 MB (bfloat16).
    "qwen2.5-0.5b-instruct": {
        "model_type": "qwen2",
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_act": "silu",
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "use_sliding_window": False, "vocab_size": 151936,
    },
    # Qwen/Qwen3-0.6B: Apache-2.0, model.safetensors 1.5 GB (bfloat16).
    "qwen3-0.6b": {
        "model_type": "qwen3",
        "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "hidden_act": "silu", "attention_bias": False, "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "use_sliding_window": False, "vocab_size": 151936,
    },
    # Qwen/Qwen3.5-0.8B (text_config): Apache-2.0; hybrid, 3 Gated DeltaNet layers to 1
    # gated attention layer.
    "qwen3.5-0.8b": {
        "model_type": "qwen3_5_text",
        "hidden_size": 1024, "intermediate_size": 3584, "num_hidden_layers": 24,
        "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256,
        "hidden_act": "silu", "attention_bias": False, "attn_output_gate": True,
        "full_attention_interval": 4,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
        "linear_num_key_heads": 16, "linear_num_value_heads": 16,
        "max_position_embeddings": 262144, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0,
                            "partial_rotary_factor": 0.25, "mrope_interleaved": True,
                            "mrope_section": [11, 11, 10]},
        "tie_word_embeddings": True, "vocab_size": 248320,
    },
    # Qwen/Qwen3-1.7B: Apache-2.0, the next size up (its Base model's weights are 3.44 GB).
    "qwen3-1.7b": {
        "model_type": "qwen3",
        "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "hidden_act": "silu", "attention_bias": False, "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "use_sliding_window": False, "vocab_size": 151936,
    },
}
DEFAULT_MODELS = "qwen2.5-0.5b-instruct,qwen3-0.6b,qwen3.5-0.8b"


def build(name: str) -> Any:
    """The model `name` with random weights, in float32, in evaluation mode."""
    import torch
    import transformers

    tf: Any = transformers  # some of its classes are untyped
    values = dict(MODELS[name])
    if values["model_type"] == "qwen3_5_text":  # one entry per layer, as the config has it
        values["layer_types"] = values["layer_types"] * (values["num_hidden_layers"] // 4)
    config = tf.AutoConfig.for_model(**values)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Never stop early: every run writes exactly --tokens tokens.
    model.generation_config = tf.GenerationConfig(
        do_sample=False, eos_token_id=None, pad_token_id=0)
    return model.eval()


def run_once(model: Any, prompt: Any, tokens: int) -> list[float]:
    """Generate `tokens` tokens after `prompt`; the time (s) each one came out, from the start."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    stamps: list[float] = []

    class Stamps(BaseStreamer):
        def put(self, value: Any) -> None:
            stamps.append(time.perf_counter())  # the first call carries the prompt

        def end(self) -> None:
            pass

    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                       max_new_tokens=tokens, min_new_tokens=tokens, streamer=Stamps())
    times = [stamp - started for stamp in stamps[1:]]
    assert len(times) == tokens, (len(times), tokens)
    return times


def measure(name: str, tokens: int, repeats: int, prompt_tokens: int) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    model = build(name)
    built = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_tokens), generator=generator)
    run_once(model, prompt, 8)  # warm-up: first-call allocations and kernel choices
    runs = [run_once(model, prompt, tokens) for _ in range(repeats)]
    del model
    first = [times[0] for times in runs]
    streaming = [(tokens - 1) / (times[-1] - times[0]) for times in runs]
    overall = [tokens / times[-1] for times in runs]
    return {
        "model": name,
        "parameters_millions": round(parameters / 1e6),
        "float32_weights_gb": round(parameters * 4 / 1e9, 2),
        "build_seconds": round(built, 1),
        "first_token_seconds": round(statistics.median(first), 3),
        "tokens_per_second_streaming": round(statistics.median(streaming), 2),
        "tokens_per_second_overall": round(statistics.median(overall), 2),
        "runs": [{"first_token_seconds": round(f, 3), "tokens_per_second_streaming": round(s, 2),
                  "total_seconds": round(times[-1], 2)}
                 for f, s, times in zip(first, streaming, runs, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per answer")
    parser.add_argument("--repeats", type=int, default=3, help="timed answers per model")
    parser.add_argument("--prompt-tokens", type=int, default=40, help="prompt length")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: as Brook, every core but one)")
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated, from: {', '.join(MODELS)}")
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")

    import torch
    import transformers

    cores = len(os.sched_getaffinity(0))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif os.environ.get("OMP_NUM_THREADS") is None:
        torch.set_num_threads(max(1, cores - 1))  # as providers/local.py does
    machine = {
        "cpu": _cpu_name(), "cores": cores, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    results = [measure(name, args.tokens, args.repeats, args.prompt_tokens) for name in names]

    print(f"{machine['cpu']}, {cores} cores, {machine['torch_threads']} torch thread(s); "
          f"torch {machine['torch']}, transformers {machine['transformers']}; "
          f"{args.tokens} tokens after a {args.prompt_tokens}-token prompt, "
          f"median of {args.repeats}, float32, random weights")
    print(f"{'model':<24}{'params':>8}{'fp32 GB':>9}{'first token':>13}"
          f"{'tokens/s':>10}{'overall':>9}")
    for r in results:
        print(f"{r['model']:<24}{r['parameters_millions']:>7}M{r['float32_weights_gb']:>9}"
              f"{r['first_token_seconds']:>12}s{r['tokens_per_second_streaming']:>10}"
              f"{r['tokens_per_second_overall']:>9}")
    print(json.dumps({"machine": machine, "tokens": args.tokens, "repeats": args.repeats,
                      "prompt_tokens": args.prompt_tokens, "results": results}, indent=2))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
