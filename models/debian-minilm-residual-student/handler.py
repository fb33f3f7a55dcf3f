"""Inference Endpoints handler for a LITE re-ranker repo (self-contained: torch + transformers + the repo's code;
transformers 4.46 – 5.x).

Payloads, as sent by the Hugging Face inference toolkit for sentence ranking:
    {"inputs": {"query": "...", "texts": ["...", ...], "return_documents": false}, "parameters": {"batch_size": 32}}
        → [{"index": i, "score": s[, "text": "..."]}, ...] sorted by score, best first
    {"inputs": [["query", "passage"], ...]}
        → {"scores": [s, ...]} in input order
`parameters` may hold batch_size, top_k (keep the best k) and return_documents; any other key is refused.
Scores are the model's raw relevance logits (higher is more relevant; no sigmoid). A request holds at most
MAX_TEXTS passages or pairs and MAX_CHARS characters, and batch_size is at most MAX_BATCH_SIZE: a bad request fails
with a message naming the field, before any work.
"""

import math

import torch
from transformers import AutoModel

MAX_TEXTS = 1024
MAX_BATCH_SIZE = 256
# Characters per request, all texts together: the tokenizer reads a text whole before truncating it (a 5 MB passage
# costs ~10 s of CPU for its first 200 tokens), so a request is capped before any work.
MAX_CHARS = 2_000_000
PARAMETERS = {"batch_size", "top_k", "return_documents"}


class EndpointHandler:
    def __init__(self, path: str = ""):
        model = AutoModel.from_pretrained(path or ".", trust_remote_code=True)
        if torch.cuda.is_available():
            model = model.half().to("cuda")  # loaded in float32, then halved: the same on every transformers release
        self.model = model.eval()

    def __call__(self, data: dict):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected a JSON object with "inputs"')
        inputs, parameters = data["inputs"], data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f'"parameters" must be a JSON object, got {type(parameters).__name__}')
        unknown = sorted(set(parameters) - PARAMETERS)
        if unknown:
            raise ValueError(f'"parameters" holds {unknown}; this endpoint reads {sorted(PARAMETERS)}')
        batch_size = positive_int(parameters.get("batch_size", 32), "parameters.batch_size", MAX_BATCH_SIZE)
        check_size(inputs)
        if isinstance(inputs, dict):
            query, texts = inputs.get("query"), inputs.get("texts")
            if not isinstance(query, str) or not query:
                raise ValueError('"inputs.query" must be a non-empty string')
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError('"inputs.texts" must be a non-empty list of strings')
            if len(texts) > MAX_TEXTS:
                raise ValueError(f'"inputs.texts" holds {len(texts)} passages; at most {MAX_TEXTS} per request')
            return_documents = boolean(
                inputs.get("return_documents", parameters.get("return_documents", False)), "return_documents"
            )
            top_k = parameters.get("top_k")
            top_k = None if top_k is None else positive_int(top_k, "parameters.top_k", MAX_TEXTS)
            ranked = self.model.rerank(
                query, texts, top_n=top_k, batch_size=batch_size, return_documents=return_documents
            )
            return [
                {"index": r["index"], "score": r["score"], **({"text": r["document"]} if return_documents else {})}
                for r in ranked
            ]
        if isinstance(inputs, list) and inputs:
            pairs = [inputs] if len(inputs) == 2 and all(isinstance(x, str) for x in inputs) else inputs
            if len(pairs) > MAX_TEXTS:
                raise ValueError(f'"inputs" holds {len(pairs)} pairs; at most {MAX_TEXTS} per request')
            for i, pair in enumerate(pairs):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
                    raise ValueError(f'"inputs"[{i}] must be a [query, passage] pair of strings')
            return {"scores": self.model.compute_score([list(pair) for pair in pairs], batch_size=batch_size)}
        raise ValueError('"inputs" must be {"query": ..., "texts": [...]} or a list of [query, passage] pairs')


def positive_int(value, field: str, maximum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)  # NaN / Infinity, which JSON parsers accept
        or value != int(value)
        or not 1 <= value <= maximum
    ):
        raise ValueError(f'"{field}" must be an integer from 1 to {maximum}, got {value!r}')
    return int(value)


def check_size(inputs):
    """Refuse a request whose texts hold more than MAX_CHARS characters in all."""
    texts = [inputs.get("query"), *(inputs.get("texts") or [])] if isinstance(inputs, dict) else inputs
    total = sum(len(text) for text in _strings(texts))
    if total > MAX_CHARS:
        raise ValueError(
            f"the request holds {total:,} characters of text; at most {MAX_CHARS:,} per request (a passage is read "
            "up to its first few hundred tokens: send that part)"
        )


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def boolean(value, field: str) -> bool:
    """A JSON boolean, or the strings "true" / "false" that some clients send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f'"{field}" must be true or false, got {value!r}')
