"""A plain cross-encoder re-ranker: `AutoModelForSequenceClassification` with one relevance logit on
`[CLS] query [SEP] passage [SEP]`.

It is the teacher LITE distils from: `train_accelerate.py --scorer cross-encoder` trains one with the same loop,
losses and checkpoints as LITE; `eval_rerank.py` scores it as a row of the same table; `scripts/teacher_scores.py`
writes its scores into a training file. Its saved folder loads with `AutoModelForSequenceClassification` and
sentence-transformers `CrossEncoder(path)` (which applies a sigmoid by default; the scores here are raw logits).
"""

import json
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils.logging import tqdm

from modeling_lite import check_tokenizer, weights_named

from .utils import eval_mode, length_groups


def is_cross_encoder(name_or_path) -> bool:
    """True when a saved model (folder or Hub id) is a sequence-classification model rather than a LITE folder."""
    from transformers.utils import cached_file

    config = json.loads(Path(cached_file(str(name_or_path), "config.json")).read_text())
    architectures = config.get("architectures") or []
    return config.get("model_type") != "lite_reranker" and any(
        name.endswith("ForSequenceClassification") for name in architectures
    )


def new_cross_encoder(encoder: str, max_length: int):
    """A fresh cross-encoder from a pretrained encoder (Hub id or folder): its weights, a new one-logit head; the
    tokenizer cuts pairs to `max_length` tokens (saved with it, so every later user cuts them the same way)."""
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    tokenizer.model_max_length = max_length
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=1)
    check_tokenizer(tokenizer, model.config.vocab_size, encoder)
    return model, tokenizer


def cross_encoder_logits(model, tokens: dict) -> torch.Tensor:
    """(n,) logits of tokenised, right-padded pairs; pairs of similar length run together, each group padded only to
    its own longest (the results are the same, the padding compute is not). Differentiable."""
    lengths = tokens["attention_mask"].sum(dim=1)
    groups = length_groups(lengths.tolist())
    if len(groups) == 1:
        return model(**tokens).logits.squeeze(-1)
    logits = []
    for rows in groups:
        rows = torch.tensor(rows, device=lengths.device)
        longest = int(lengths[rows].max())
        logits.append(model(**{key: value[rows, :longest] for key, value in tokens.items()}).logits.squeeze(-1))
    order = torch.tensor([row for rows in groups for row in rows], device=lengths.device)
    return torch.cat(logits)[torch.argsort(order)]  # back to the input order


def quantize_int8(model):
    """`model` with every nn.Linear replaced by PyTorch's dynamically quantized int8 linear (CPU inference only):
    int8 weights and int8 GEMMs (VNNI where the CPU has it), activations quantized per batch, the rest in float32."""
    if next(model.parameters()).device.type != "cpu" or next(model.parameters()).dtype != torch.float32:
        raise ValueError("int8 dynamic quantization runs on CPU from a float32 model (--dtype float32)")
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, which is not here
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class CrossEncoderScorer:
    """A cross-encoder and its tokenizer, scoring (query, passage) pairs at inference."""

    def __init__(self, model, tokenizer, max_length: int | None = None):
        self.model, self.tokenizer = model, tokenizer
        positions = getattr(model.config, "max_position_embeddings", 512)
        self.max_length = min(max_length or tokenizer.model_max_length, positions)

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=None, int8: bool = False) -> "CrossEncoderScorer":
        """The saved cross-encoder, in `dtype`; with `int8` (CPU, float32), every linear layer dynamically quantized
        (int8 weights, activations quantized per batch; `quantize_int8`)."""
        with weights_named(path):
            model = AutoModelForSequenceClassification.from_pretrained(path).to(device=device, dtype=dtype)
        if model.config.num_labels != 1:
            raise ValueError(
                f"{path}: a cross-encoder re-ranker has one relevance logit, this model has "
                f"{model.config.num_labels} labels"
            )
        tokenizer = AutoTokenizer.from_pretrained(path)
        check_tokenizer(tokenizer, model.config.vocab_size, path)
        return cls(quantize_int8(model.eval()) if int8 else model.eval(), tokenizer)

    @property
    def device(self):
        return self.model.device

    @torch.inference_mode()
    def score(
        self,
        queries: list[str],
        passages: list[str],
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "Scoring pairs",
    ) -> list[float]:
        """Raw logits of the pairs (queries[i], passages[i]), in input order. Pairs are batched by length."""
        if not queries:  # e.g. every pair of a part copied by teacher_scores.py --reuse (the tokenizer fails on [])
            return []
        token_ids = self.tokenizer(list(queries), list(passages), truncation=True, max_length=self.max_length)
        order = sorted(range(len(queries)), key=lambda i: -len(token_ids["input_ids"][i]))
        scores = [0.0] * len(order)
        with eval_mode(self.model):
            for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress):
                rows = order[start : start + batch_size]
                features = [{key: values[i] for key, values in token_ids.items()} for i in rows]
                padded = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
                for row, value in zip(rows, self.model(**padded).logits.squeeze(-1).float().tolist()):
                    scores[row] = value
        return scores
