"""Train the example's tiny byte-level GPT-2 on corpus.txt and write it to model/ (config.json
and model.safetensors): ``python examples/generate/train.py``. Seeded, so a run makes the same
weights on the same torch; the shipped model/ is its output (a few minutes on two CPU cores).
No model hub is reached: the config and the tokenizer (bytes) are made here.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

HERE = Path(__file__).resolve().parent
VOCAB = 257  # the 256 byte values and end-of-text
EOS = 256
CONTEXT = 256
STEPS, BATCH, SEQ = 800, 32, 96


def config() -> GPT2Config:
    return GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=4,
                      bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    data = torch.tensor(list((HERE / "corpus.txt").read_bytes()) + [EOS])
    model = GPT2LMHeadModel(config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.monotonic()
    for step in range(STEPS):
        at = torch.randint(0, len(data) - SEQ - 1, (BATCH,))
        batch = torch.stack([data[i:i + SEQ + 1] for i in at.tolist()])
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        # labels are shifted inside the model: the loss is next-byte prediction
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step}: loss {loss.item():.3f} ({time.monotonic() - start:.0f} s)")
    model.half().save_pretrained(HERE / "model")  # half: a 0.3 MB file in the repository


if __name__ == "__main__":
    main()
