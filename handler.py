"""Inference Endpoints handler for a LITE re-ranker repo (self-contained: torch + transformers + the repo's code).

Payloads, as sent by the Hugging Face inference toolkit for sentence ranking:
    {"inputs": {"query": "...", "texts": ["...", ...], "return_documents": false}}
        → [{"index": i, "score": s[, "text": "..."]}, ...] sorted by score, best first
    {"inputs": [["query", "passage"], ...]}
        → {"scores": [s, ...]} in input order
Scores are the model's raw relevance logits (higher is more relevant).
"""

import torch
from transformers import AutoModel


class EndpointHandler:
    def __init__(self, path: str = ""):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if device == "cuda" else torch.float32
        self.model = AutoModel.from_pretrained(path or ".", trust_remote_code=True, dtype=dtype).to(device).eval()

    def __call__(self, data: dict):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected a JSON object with "inputs"')
        inputs = data["inputs"]
        parameters = data.get("parameters") or {}
        batch_size = int(parameters.get("batch_size", 32))
        if isinstance(inputs, dict):
            query, texts = inputs.get("query"), inputs.get("texts")
            if not isinstance(query, str) or not query:
                raise ValueError('"inputs.query" must be a non-empty string')
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError('"inputs.texts" must be a non-empty list of strings')
            return_documents = bool(inputs.get("return_documents", parameters.get("return_documents", False)))
            ranked = self.model.rerank(query, texts, batch_size=batch_size, return_documents=return_documents)
            return [{"index": r["index"], "score": r["score"], **({"text": r["document"]} if return_documents else {})}
                    for r in ranked]  # fmt: skip
        if isinstance(inputs, list) and inputs:
            pairs = [inputs] if len(inputs) == 2 and all(isinstance(x, str) for x in inputs) else inputs
            for i, pair in enumerate(pairs):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
                    raise ValueError(f'"inputs"[{i}] must be a [query, passage] pair of strings')
            return {"scores": self.model.compute_score([list(pair) for pair in pairs], batch_size=batch_size)}
        raise ValueError('"inputs" must be {"query": ..., "texts": [...]} or a list of [query, passage] pairs')
