"""LITE on the multi-vector models people already have, and a multi-vector encoder back out (issue 37).

In: a sentence-transformers `MultiVectorEncoder` (which also loads PyLate and Stanford ColBERT folders) becomes a LITE
model whose encoder side computes exactly the encoder's own token vectors: the backbone, its projection (as LITE's
`projection_dim`), the query / document prompts (inserted as prefix token ids), query expansion, the document
skiplist, normalisation, and the query / document lengths. With `scorer="residual"` a fresh model scores exactly as
`MultiVectorEncoder.similarity` (MaxSim) and training can only start from there.

Out: a LITE model's encoder side written as a `MultiVectorEncoder` folder ([Transformer, Dense, MultiVectorMask,
Normalize]) that encodes as `LiteModel.encode_queries` / `encode_documents` do, for the first stage.

What a multi-vector model can hold and LITE cannot compute is refused by name: a Dense with an activation or a
residual, more than one Dense, token pooling, `truncate_dim`, MeanMaxSim, an allowlist of token ids, modules of
other kinds. Needs the `multi-vector` extra (sentence-transformers, the range in pyproject.toml).
"""

import json
from pathlib import Path

import torch

from modeling_lite import LiteModel, is_multi_vector_model

from .doc_cache import model_fingerprint
from .utils import VECTOR_FIELDS, new_folder_problem

EXTRA = 'pip install "lite-reranker[multi-vector]"  (sentence-transformers >= 6.3, < 7)'
# the LiteConfig fields a multi-vector model decides (its vectors' fields but Small-LITE's compressor, which is LITE's
# own, and its tokenizer's special ids); a caller may not override them (the vectors would differ)
CARRIED_FIELDS = tuple(f for f in VECTOR_FIELDS if f not in ("doc_stored_tokens", "query_token_weights")) + (
    "pad_token_id",
    "cls_token_id",
    "sep_token_id",
)
_PROBE = "probe text for the prompt"
# written beside an exported encoder: which LITE model it came from, so that model's document cache can be read for it
EXPORT_RECORD = "lite_export.json"


class MultiVectorError(ValueError):
    """A multi-vector model LITE cannot reproduce exactly, or a LITE model a multi-vector encoder cannot express."""


def _sentence_transformers():
    try:
        import sentence_transformers
        from sentence_transformers import MultiVectorEncoder  # noqa: F401  (6.0 and later)
    except ImportError as error:
        raise ImportError(
            f"Multi-vector models (sentence-transformers MultiVectorEncoder, PyLate, ColBERT) need the "
            f"multi-vector extra: {EXTRA}. ({error})"
        ) from None
    return sentence_transformers


def load_multi_vector_encoder(name_or_path, **kwargs):
    """`MultiVectorEncoder(name_or_path)` on the CPU, or a clear error naming the extra when it is missing."""
    return _sentence_transformers().MultiVectorEncoder(str(name_or_path), device="cpu", **kwargs)


def _prompt(encoder, task: str) -> str | None:
    """The prompt `encode_query` / `encode_document` prepend (its own name, else the default prompt)."""
    prompts = encoder.prompts or {}
    if task in prompts:
        return prompts[task] or None
    if encoder.default_prompt_name is not None:
        return prompts.get(encoder.default_prompt_name) or None
    return None


def prefix_ids(tokenizer, prompt: str | None) -> list[int] | None:
    """The token ids a text prompt adds after [CLS], checked to tokenise apart from any text that follows it."""
    if not prompt:
        return None
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with_prompt = tokenizer(prompt + _PROBE)["input_ids"]
    plain = tokenizer(_PROBE)["input_ids"]
    if not ids or with_prompt != plain[:1] + ids + plain[1:]:
        raise MultiVectorError(
            f"the prompt {prompt!r} does not tokenise apart from the text after it (with it: {with_prompt}; "
            f"without: {plain}), so LITE cannot insert it as token ids; a prompt that ends in a space usually does"
        )
    return ids


def carried_config(encoder) -> tuple[dict, "torch.nn.Module | None"]:
    """The LiteConfig fields that make LITE encode as `encoder` does, besides the backbone's config and the special
    token ids (`LiteModel.from_loaded_encoder` takes those from the backbone and the tokenizer), and its projection
    (a `Dense`, or None). Refuses, by name, what LITE cannot compute."""
    _sentence_transformers()
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    modules = list(encoder)
    names = [type(module).__name__ for module in modules]
    if not modules or not isinstance(modules[0], Transformer):
        raise MultiVectorError(f"the model's first module must be a Transformer; its modules are {names}")
    transformer = modules[0]
    dense = [m for m in modules if isinstance(m, Dense)]
    masks = [m for m in modules if isinstance(m, MultiVectorMask)]
    normalize = [m for m in modules if isinstance(m, Normalize)]
    other = [type(m).__name__ for m in modules[1:] if not isinstance(m, (Dense, MultiVectorMask, Normalize))]
    problems = []
    if other:
        problems.append(f"modules LITE has no counterpart for: {other}")
    if len(dense) > 1 or len(masks) > 1 or len(normalize) > 1:
        problems.append(f"more than one Dense / MultiVectorMask / Normalize: {names}")
    if dense:
        layer = dense[0]
        if not isinstance(layer.activation_function, torch.nn.Identity) or getattr(layer, "use_residual", False):
            problems.append(f"a Dense with an activation or a residual ({type(layer.activation_function).__name__})")
        if normalize and modules.index(normalize[0]) < modules.index(layer):
            problems.append("Normalize before the Dense (LITE normalises after its projection)")
    if masks and masks[0].keep_only_token_ids:
        problems.append("MultiVectorMask keep_only_token_ids (an allowlist of document tokens)")
    if encoder.similarity_fn_name != "maxsim":
        problems.append(f"similarity {encoder.similarity_fn_name!r} (LITE's residual adds to MaxSim)")
    if encoder.truncate_dim is not None or encoder.token_pooling is not None:
        problems.append("truncate_dim or token_pooling set on the model")
    if problems:
        raise MultiVectorError(
            "this multi-vector model computes vectors LITE cannot reproduce exactly: " + "; ".join(problems)
        )
    tokenizer = encoder.tokenizer
    expansion = transformer.query_expansion
    backbone = transformer.auto_model.config
    # what a batch is truncated to when no task length is set; a tokenizer without a limit says 1e30
    max_length = min(
        transformer.max_seq_length or tokenizer.model_max_length,
        getattr(backbone, "max_position_embeddings", None) or tokenizer.model_max_length,
    )
    query_length = transformer.query_length or max_length
    fields = dict(
        doc_max_length=transformer.document_length or max_length,
        query_max_length=query_length,
        projection_dim=dense[0].out_features if dense else None,
        normalize_embeddings=bool(normalize),
        query_prefix_ids=prefix_ids(tokenizer, _prompt(encoder, "query")),
        doc_prefix_ids=prefix_ids(tokenizer, _prompt(encoder, "document")),
    )
    if expansion is not None:
        token = expansion["token"]
        token_id = tokenizer.mask_token_id if token is None else tokenizer.convert_tokens_to_ids(token)
        if token_id is None:
            token_id = tokenizer.eos_token_id
        length = expansion["length"]
        fields["query_expansion"] = dict(
            strategy=expansion["strategy"], length=length, token_id=token_id, attend=expansion["attend"]
        )
        fields["query_max_length"] = length if expansion["strategy"] == "fixed" else max(query_length, length)
    if masks and masks[0]._skiplist_ids is not None:
        skiplist = sorted(set(masks[0]._skiplist_ids.tolist()))
        tasks = set(masks[0].skiplist_tasks)
        fields["doc_skiplist_ids"] = skiplist if "document" in tasks else None
        fields["query_skiplist_ids"] = skiplist if "query" in tasks else None
    return fields, (dense[0] if dense else None)


def lite_from_multi_vector(encoder_or_path, **config_overrides) -> LiteModel:
    """A new LITE model on a multi-vector model (a `MultiVectorEncoder`, or a folder / Hub id it loads): its encoder,
    projection, prompts, expansion, skiplist, normalisation and lengths carried over; the scorer fresh. With
    `scorer="residual"` it scores exactly as the encoder's MaxSim. `config_overrides` set the scorer's fields only."""
    encoder = encoder_or_path
    if isinstance(encoder_or_path, (str, Path)):
        encoder = load_multi_vector_encoder(encoder_or_path)
    clashes = sorted(set(config_overrides) & set(CARRIED_FIELDS))
    if clashes:
        raise MultiVectorError(
            f"{clashes} come from the multi-vector model (they decide its vectors); change them there, not here"
        )
    fields, dense = carried_config(encoder)
    model = LiteModel.from_loaded_encoder(
        encoder[0].auto_model, encoder.tokenizer, "the multi-vector model", **fields, **config_overrides
    )
    if dense is not None:
        with torch.no_grad():
            model.projection.weight.copy_(dense.linear.weight)
            bias = dense.linear.bias
            model.projection.bias.copy_(bias if bias is not None else torch.zeros_like(model.projection.bias))
    return model.eval()


def from_encoder(encoder_name_or_path, **config_overrides) -> LiteModel:
    """A new LITE model on any encoder: a multi-vector model's folder or Hub id (`lite_from_multi_vector`: its
    projection, prompts, expansion, skiplist, normalisation and lengths carried) or a plain transformers encoder
    (`LiteModel.from_encoder`). `config_overrides` set LiteConfig fields."""
    if is_multi_vector_model(encoder_name_or_path):
        return lite_from_multi_vector(encoder_name_or_path, **config_overrides)
    return LiteModel.from_encoder(encoder_name_or_path, **config_overrides)


def _padded(embeddings, length: int, model, kind: str):
    """A multi-vector encoder's ragged per-text vectors as LITE's (batch, length, dim) + mask, checked."""
    if isinstance(embeddings, torch.Tensor) and embeddings.dim() == 2:
        embeddings = [embeddings]
    embeddings = [torch.as_tensor(e, dtype=torch.float32) for e in embeddings]
    if not embeddings:
        raise MultiVectorError(f"no {kind} embeddings: pass a list of at least one {kind}'s vectors")
    dim = model.config.embedding_dim
    for index, vectors in enumerate(embeddings):
        if vectors.dim() != 2 or vectors.shape[1] != dim or not 0 < vectors.shape[0] <= length:
            raise MultiVectorError(
                f"{kind} embeddings[{index}] has shape {tuple(vectors.shape)}; this model scores 1 to {length} "
                f"vectors of width {dim} per {kind} (is it the encoder this model was built from?)"
            )
        if not torch.isfinite(vectors).all():  # NaN passes any comparison with a tolerance, and scores NaN
            raise MultiVectorError(f"{kind} embeddings[{index}] hold NaN or infinite values")
        norms = vectors.norm(dim=1)
        if model.config.normalize_embeddings and (norms - 1).abs().max() > 1e-3:
            padding = " (all-zero rows: padding; pass each text's own vectors, a list, not one padded tensor)"
            raise MultiVectorError(
                f"{kind} embeddings[{index}] are not unit vectors, and this model's are"
                f"{padding if (norms == 0).any() else ''}: they come from another encoder, or were encoded without "
                "its normalisation"
            )
    padded = torch.zeros(len(embeddings), length, dim)
    mask = torch.zeros(len(embeddings), length, dtype=torch.bool)
    for index, vectors in enumerate(embeddings):
        padded[index, : len(vectors)], mask[index, : len(vectors)] = vectors, True
    return padded, mask


@torch.inference_mode()
def score_multi_vector_embeddings(model, query_embeddings, doc_embeddings) -> torch.Tensor:
    """LITE's scores (queries, documents) on vectors a multi-vector encoder made — `MultiVectorEncoder.encode_query`
    / `encode_document` of the encoder this model was built from or exported to, e.g. a first-stage index's stored
    documents — without encoding the texts again. Shapes and normalisation are checked against the model."""
    if model.config.doc_stored_tokens:
        raise MultiVectorError("Small-LITE compresses the document tokens it encodes; score texts instead")
    if model.config.query_token_weights:
        raise MultiVectorError(
            "query_token_weights weighs each query vector by its token's learned weight, and these vectors come "
            "without their token ids; score the query text (documents' stored vectors are fine: see cached_documents)"
        )
    queries, query_mask = _padded(query_embeddings, model.config.query_max_length, model, "query")
    docs, doc_mask = _padded(doc_embeddings, model.config.doc_max_length, model, "document")
    dtype, device = model.dtype, model.device
    docs, doc_mask = docs.to(device, dtype), doc_mask.to(device)
    rows = [
        model.score_embeddings(queries[i : i + 1].to(device, dtype), query_mask[i : i + 1].to(device), docs, doc_mask)
        for i in range(len(queries))
    ]
    return torch.stack(rows).float()


def _prompt_text(tokenizer, ids: list[int] | None) -> str | None:
    """A prompt string that tokenises back to `ids` after [CLS]."""
    if not ids:
        return None
    prompt = tokenizer.decode(ids) + " "
    if prefix_ids(tokenizer, prompt) != ids:
        raise MultiVectorError(f"the prefix {ids} has no prompt text that tokenises back to it ({prompt!r})")
    return prompt


def export_multi_vector_encoder(model: LiteModel, output_dir, tokenizer=None):
    """Write `model`'s encoder side as a `MultiVectorEncoder` folder that encodes as `encode_queries` /
    `encode_documents` do (float32). Returns the loaded `MultiVectorEncoder`."""
    st = _sentence_transformers()
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    config = model.config
    tokenizer = tokenizer or model.tokenizer
    if config.doc_stored_tokens:
        raise MultiVectorError(
            "Small-LITE's document compressor (doc_stored_tokens) mixes token vectors; a multi-vector encoder "
            "keeps one vector per token, so this model has no multi-vector export"
        )
    if config.query_token_weights:
        raise MultiVectorError(
            "query_token_weights weighs each query vector by its token's learned weight; a multi-vector encoder has "
            "no module for that, so this model has no multi-vector export"
        )
    if config.doc_skiplist_ids and config.query_skiplist_ids and config.doc_skiplist_ids != config.query_skiplist_ids:
        raise MultiVectorError("different query and document skiplists: a MultiVectorMask holds one skiplist")
    output_dir = Path(output_dir)
    problem = new_folder_problem(output_dir)
    if problem:  # the model's own folder, above all: its config, weights and tokenizer would be replaced
        raise MultiVectorError(f"{problem}; export into a new or empty folder (nothing was written)")
    backbone_dir = output_dir / "0_Transformer"
    backbone_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    expansion = config.query_expansion
    transformer = Transformer(
        str(backbone_dir),
        query_length=config.query_max_length,
        document_length=config.doc_max_length,
        query_expansion=None
        if expansion is None
        else {
            "strategy": expansion["strategy"],
            "attend": expansion["attend"],
            "length": expansion["length"],
            "token": tokenizer.convert_ids_to_tokens(expansion["token_id"]),
        },
    )
    modules = [transformer]
    if model.projection is not None:
        dense = Dense(
            config.hidden_size,
            config.projection_dim,
            bias=True,
            activation_function=None,
            module_input_name="token_embeddings",
        )
        dense.linear.load_state_dict(model.projection.state_dict())
        modules.append(dense)
    skiplist = config.doc_skiplist_ids or config.query_skiplist_ids
    tasks = [
        task for task, ids in (("query", config.query_skiplist_ids), ("document", config.doc_skiplist_ids)) if ids
    ]
    modules.append(
        MultiVectorMask(
            skiplist_words=tokenizer.convert_ids_to_tokens(skiplist) if skiplist else None,
            skiplist_tasks=tasks or None,
        )
    )
    if config.normalize_embeddings:
        modules.append(Normalize(module_input_name="token_embeddings"))
    prompts = {
        task: text
        for task, text in (
            ("query", _prompt_text(tokenizer, config.query_prefix_ids)),
            ("document", _prompt_text(tokenizer, config.doc_prefix_ids)),
        )
        if text
    }
    encoder = st.MultiVectorEncoder(modules=modules, prompts=prompts or None, device="cpu")
    encoder.save(str(output_dir))
    record = {
        "format": "lite-multi-vector-export/1",
        "lite_model": str(model.name_or_path or ""),
        "lite_model_fingerprint": model_fingerprint(model),
    }
    (output_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return st.MultiVectorEncoder(str(output_dir), device="cpu")


def cached_documents(cache, ids, encoder_folder) -> list[torch.Tensor]:
    """Documents of a LITE document cache (`lite_rerank.doc_cache`) in a `MultiVectorEncoder`'s format, one
    (tokens, dim) float32 tensor each, for the encoder exported from the LITE model that built the cache (its
    lite_export.json says which): MaxSim over them is the first stage's, without encoding the passages again. The
    cache's fp16 / int8 storage rounds them. A cache of any other model is refused."""
    record_path = Path(encoder_folder) / EXPORT_RECORD
    if not record_path.is_file():
        raise MultiVectorError(
            f"{encoder_folder} has no {EXPORT_RECORD}: it was not written by scripts/export_multi_vector.py, so "
            "nothing says which LITE model's document cache holds its vectors"
        )
    try:
        fingerprint = json.loads(record_path.read_text())["lite_model_fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        raise MultiVectorError(f"{record_path}: unreadable ({type(error).__name__}: {error})") from None
    if cache.manifest["model_fingerprint"] != fingerprint:
        raise MultiVectorError(
            f"{cache.folder} was built by another LITE model than the one {encoder_folder} was exported from "
            f"({json.loads(record_path.read_text()).get('lite_model') or 'see ' + str(record_path)}); its vectors are "
            "not this encoder's: encode the documents with the encoder, or build the cache with that model"
        )
    vectors, mask = cache.get(list(ids))
    return [row[keep] for row, keep in zip(vectors, mask)]


__all__ = [
    "MultiVectorError",
    "cached_documents",
    "carried_config",
    "export_multi_vector_encoder",
    "is_multi_vector_model",
    "lite_from_multi_vector",
    "load_multi_vector_encoder",
    "score_multi_vector_embeddings",
]
