"""A tiny local model for the `local` provider: a random-weight Llama (hidden 32, 2 layers,
2 heads) and a BPE tokenizer trained on a few paragraphs, with a chat template.

tests/test_local.py builds one per test session; benchmarks/local_responsiveness.py builds
one to measure against. Greedy and seeded, so every answer to the same prompt is the same.
Needs the `local` extra (torch, transformers).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

PARAGRAPHS = [
    "Brook streams a language model's answer to the browser over server-sent events.",
    "It keeps every conversation in a SQL database: SQLite by default, PostgreSQL in "
    "production. Why? Because answers must survive reloads, dropped connections and restarts.",
    "The quick brown fox jumps over the lazy dog. Python is a programming language; Flask is "
    "a small web framework for it.\nCode blocks look like this:\n```python\nprint(42)\n```",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    # As Qwen3's templates do: thinking off is an empty think block the model goes on from.
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


def save_tiny_model(path: Path) -> None:
    """Build the model and its tokenizer and save both in the folder `path`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tf: Any = transformers  # some of its classes are untyped

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=300, show_progress=False,
        special_tokens=["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation + "\n"))
    tokenizer.train_from_iterator(PARAGRAPHS * 5, trainer)
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=4096, bos_token_id=fast.bos_token_id,
                         eos_token_id=None, pad_token_id=fast.pad_token_id)
    model = tf.LlamaForCausalLM(config)
    # No end-of-sequence token: a random model would emit it at random; every answer here
    # runs to LOCAL_MODEL_MAX_TOKENS (or Stop). Greedy, so the answer is reproducible.
    model.generation_config = tf.GenerationConfig(eos_token_id=None,
                                                  pad_token_id=fast.pad_token_id,
                                                  do_sample=False)
    model.save_pretrained(path)
    fast.save_pretrained(path)
