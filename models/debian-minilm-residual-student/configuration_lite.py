"""LITE (Learnable Late InTEraction) re-ranker configuration.

Self-contained Hub code: imports only `transformers` (and the standard library). Written against the API that
transformers 4.46 – 5.x share (`PretrainedConfig` with keyword arguments), so the Hub folder loads on the
transformers its users have.
"""

from transformers import AutoConfig, PretrainedConfig
from transformers.activations import ACT2FN

LITE_AUTO_MAP = {
    "AutoConfig": "configuration_lite.LiteConfig",
    "AutoModel": "modeling_lite.LiteModel",
    "AutoModelForSequenceClassification": "modeling_lite.LiteModel",
}
SCORERS = ("lite", "maxsim", "residual")
# Scorers whose CrossEncoder and text-classification pipeline routes return raw scores, not the libraries' default
# sigmoid (their config says so; see LiteConfig.__init__)
RAW_SCORE_SCORERS = ("residual",)
DEFAULT_ENCODER = {"model_type": "distilbert"}  # the distilbert-base-uncased architecture


class LiteConfig(PretrainedConfig):
    r"""
    Configuration of a [`LiteModel`]: a shared BERT-like encoder, a similarity matrix S = Q·Dᵀ between the query's
    and the document's token embeddings, and a scorer on S (Ji et al. 2024, "Efficient Document Ranking with
    Learnable Late Interactions", arXiv:2406.17968).

    Args:
        encoder_config (`dict` or `PretrainedConfig`, *optional*):
            Config of the shared encoder, nested and serialised in config.json. Any BERT-like encoder loadable with
            `AutoModel.from_config` works (DistilBERT, BERT, MiniLM). Defaults to the `distilbert-base-uncased`
            architecture (dim 768, 6 layers, vocab 30522).
        scorer (`str`, *optional*, defaults to `"lite"`):
            `"lite"`: separable LITE (row MLP over the document axis, column MLP over the query axis, linear map to one
            score). `"maxsim"`: ColBERT's Σ_i max_j S_ij, no parameters. `"residual"`: MaxSim plus a LITE term,
            `maxsim_scale · Σ_i max_j S_ij + LITE(S)`, LITE's output map initialised to zero and the scale to 1, so
            a fresh model ranks and scores exactly as MaxSim on the same encoder and training learns a correction.
        query_max_length (`int`, *optional*, defaults to 30):
            L1, query tokens ([CLS] and [SEP] included) the scorer sees. Longer queries are truncated like a tokenizer
            with `truncation=True, max_length=L1` would: the first L1-1 tokens and the final [SEP].
        doc_max_length (`int`, *optional*, defaults to 200):
            L2, document tokens the scorer sees; truncated the same way.
        row_hidden_size (`int`, *optional*, defaults to 2400):
            Hidden size of the row MLP (document axis, L2 → row_hidden_size → L2).
        col_hidden_size (`int`, *optional*, defaults to 360):
            Hidden size of the column MLP (query axis, L1 → col_hidden_size → L1).
        activation (`str`, *optional*, defaults to `"relu"`):
            Activation of both MLPs, a key of `transformers.activations.ACT2FN`.
        normalize_embeddings (`bool`, *optional*, defaults to `True`):
            L2-normalise the token vectors before S = Q·Dᵀ, so S holds cosine similarities.
        projection_dim (`int`, *optional*):
            Small-LITE: a linear map d → projection_dim on every token embedding (query and document). Off when None.
        doc_stored_tokens (`int`, *optional*):
            Small-LITE: a learned linear map over the token axis that compresses the L2 document tokens into K stored
            vectors; the scorer then sees an L1 × K matrix. Off when None.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the scorer's linear layers.
        pad_token_id / cls_token_id / sep_token_id (`int`):
            Special token ids of the encoder's tokenizer (defaults: the uncased BERT vocabulary). The pair calling
            convention splits `[CLS] query [SEP] doc [SEP]` at the first `sep_token_id`.
        query_prefix_ids / doc_prefix_ids (`list[int]`, *optional*):
            Token ids the model inserts after the first token ([CLS]) of every query / document before encoding:
            ColBERT's `[Q]` / `[D]` markers (a multi-vector model's prompts). Inputs are plain tokenised texts on
            every route; the prefix counts towards query_max_length / doc_max_length, as a prompt does. Off when None.
        query_expansion (`dict`, *optional*):
            ColBERT's query expansion, as sentence-transformers' `MultiVectorEncoder` does it: `{"strategy": "fixed" |
            "min", "length": n, "token_id": id, "attend": bool}`. A query shorter than `length` tokens is padded to
            it with `token_id` (usually [MASK]); those positions are scored, and attended to by the encoder only
            when `attend`. "fixed" also truncates queries to `length` (= query_max_length); "min" only pads.
        doc_skiplist_ids / query_skiplist_ids (`list[int]`, *optional*):
            Token ids encoded in context but left out of scoring (ColBERT's punctuation skiplist, documents only by
            default); the remaining vectors keep their order. Off when None.
        query_token_weights (`bool`, *optional*, defaults to `False`):
            A learned positive weight per vocabulary token on the query's (normalised) vectors, w = exp(δ) with δ = 0
            in a fresh model, which then scores exactly as without. Weighting a query token's vector scales its row
            of S, so MaxSim becomes the weighted Chamfer sum Σ_i w(q_i) max_j S_ij (the residual scorer's MaxSim term
            too); the LITE term sees the weighted S. Documents are not weighted.
    """

    model_type = "lite_reranker"
    sub_configs = {"encoder_config": AutoConfig}

    def __init__(
        self,
        encoder_config=None,
        scorer: str = "lite",
        query_max_length: int = 30,
        doc_max_length: int = 200,
        row_hidden_size: int = 2400,
        col_hidden_size: int = 360,
        activation: str = "relu",
        normalize_embeddings: bool = True,
        projection_dim: int | None = None,
        doc_stored_tokens: int | None = None,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        cls_token_id: int = 101,
        sep_token_id: int = 102,
        query_prefix_ids: list[int] | None = None,
        doc_prefix_ids: list[int] | None = None,
        query_expansion: dict | None = None,
        doc_skiplist_ids: list[int] | None = None,
        query_skiplist_ids: list[int] | None = None,
        query_token_weights: bool = False,
        **kwargs,
    ):
        if encoder_config is None:
            encoder_config = dict(DEFAULT_ENCODER)
        if isinstance(encoder_config, dict):
            encoder_config = dict(encoder_config)
            model_type = encoder_config.pop("model_type", None)
            if model_type is None:
                raise ValueError("LiteConfig.encoder_config needs a 'model_type' (e.g. 'bert' or 'distilbert').")
            encoder_config = AutoConfig.for_model(model_type, **encoder_config)
        if not isinstance(encoder_config, PretrainedConfig):
            raise ValueError(
                f"LiteConfig.encoder_config must be a dict or a PretrainedConfig, got {type(encoder_config).__name__}."
            )
        # Where the encoder's weights came from is the builder's business (often a local path): not saved.
        encoder_config._name_or_path = ""
        # A re-ranker has one output: a raw relevance score, `logits` of shape (batch, 1).
        kwargs.setdefault("num_labels", 1)
        if scorer in RAW_SCORE_SCORERS:
            # Its scores are MaxSim on the teacher's scale (often above 17, where float32's sigmoid is 1.0): the
            # sigmoid that CrossEncoder and the text-classification pipeline apply by default would tie the best
            # candidates. These two fields make both return the raw score, as every other route does.
            kwargs.setdefault("problem_type", "regression")
            kwargs.setdefault("sentence_transformers", {"activation_fn": "torch.nn.modules.linear.Identity"})
        # Standard token ids go through PretrainedConfig (transformers 4.x resets any it is not given).
        super().__init__(pad_token_id=pad_token_id, sep_token_id=sep_token_id, **kwargs)
        self.encoder_config = encoder_config
        self.scorer = scorer
        self.query_max_length = query_max_length
        self.doc_max_length = doc_max_length
        self.row_hidden_size = row_hidden_size
        self.col_hidden_size = col_hidden_size
        self.activation = activation
        self.normalize_embeddings = normalize_embeddings
        self.projection_dim = projection_dim
        self.doc_stored_tokens = doc_stored_tokens
        self.initializer_range = initializer_range
        self.cls_token_id = cls_token_id
        # tuples (from Python callers) stored as the lists JSON gives back; anything else is checked as given
        self.query_prefix_ids = _listed(query_prefix_ids)
        self.doc_prefix_ids = _listed(doc_prefix_ids)
        self.query_expansion = query_expansion
        self.doc_skiplist_ids = _listed(doc_skiplist_ids)
        self.query_skiplist_ids = _listed(query_skiplist_ids)
        self.query_token_weights = query_token_weights
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(LITE_AUTO_MAP)
        self.validate_architecture()

    @property
    def hidden_size(self) -> int:
        """Width of the encoder's token embeddings."""
        return self.encoder_config.hidden_size

    @property
    def embedding_dim(self) -> int:
        """Width of the token vectors the scorer sees (after the optional projection)."""
        return self.projection_dim or self.hidden_size

    @property
    def doc_vectors(self) -> int:
        """K: the vectors per document the scorer sees and a cache stores (doc_stored_tokens, or L2 without it)."""
        return self.doc_stored_tokens or self.doc_max_length

    def to_dict(self):
        output = super().to_dict()
        output["encoder_config"] = self.encoder_config.to_dict()  # nested as a plain dict, on every release
        output["encoder_config"].pop("_name_or_path", None)
        output.pop("_attn_implementation_autoset", None)
        return output

    def validate_architecture(self):
        """Every field is checked when the config is built or loaded: a bad value fails here, by name."""
        if self.scorer not in SCORERS:
            raise ValueError(f"LiteConfig.scorer must be one of {list(SCORERS)}, got {self.scorer!r}.")
        for name in ("query_max_length", "doc_max_length", "row_hidden_size", "col_hidden_size"):
            value = getattr(self, name)
            minimum = 2 if name.endswith("max_length") else 1  # a sequence needs room for [CLS] and [SEP]
            if not _is_int(value) or value < minimum:
                raise ValueError(f"LiteConfig.{name} must be an integer of at least {minimum}, got {value!r}.")
        if self.activation not in ACT2FN:
            raise ValueError(f"LiteConfig.activation={self.activation!r} is unknown; use one of {sorted(ACT2FN)}.")
        for name in ("normalize_embeddings", "query_token_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LiteConfig.{name} must be true or false, got {getattr(self, name)!r}.")
        if self.projection_dim is not None and (not _is_int(self.projection_dim) or self.projection_dim < 1):
            raise ValueError(
                f"LiteConfig.projection_dim must be a positive integer or None, got {self.projection_dim!r}."
            )
        if self.doc_stored_tokens is not None and not (
            _is_int(self.doc_stored_tokens) and 1 <= self.doc_stored_tokens <= self.doc_max_length
        ):
            raise ValueError(
                f"LiteConfig.doc_stored_tokens must be between 1 and doc_max_length={self.doc_max_length} "
                f"(it compresses the encoded document tokens), got {self.doc_stored_tokens!r}."
            )
        vocab_size = getattr(self.encoder_config, "vocab_size", None)
        for name in ("pad_token_id", "cls_token_id", "sep_token_id"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0 or (_is_int(vocab_size) and value >= vocab_size):
                raise ValueError(
                    f"LiteConfig.{name} must be a token id of the encoder's vocabulary (0 to {vocab_size - 1}), "
                    f"got {value!r}."
                    if _is_int(vocab_size)
                    else f"LiteConfig.{name} must be a non-negative integer token id, got {value!r}."
                )
        self._validate_multi_vector_fields(vocab_size)
        encoder_positions = getattr(self.encoder_config, "max_position_embeddings", None)
        if encoder_positions is not None and max(self.query_max_length, self.doc_max_length) > encoder_positions:
            raise ValueError(
                f"LiteConfig query_max_length={self.query_max_length} / doc_max_length={self.doc_max_length} exceed "
                f"the encoder's max_position_embeddings={encoder_positions}."
            )

    def _validate_multi_vector_fields(self, vocab_size):
        """The fields a multi-vector model (ColBERT, PyLate, sentence-transformers MultiVectorEncoder) brings."""

        def check_ids(name, ids):
            if ids is None:
                return
            if not isinstance(ids, list) or not ids or not all(_is_int(i) and i >= 0 for i in ids):
                raise ValueError(f"LiteConfig.{name} must be a non-empty list of token ids or None, got {ids!r}.")
            if _is_int(vocab_size) and max(ids) >= vocab_size:
                raise ValueError(
                    f"LiteConfig.{name} holds {max(ids)}, beyond the encoder's vocabulary ({vocab_size})."
                )

        for name in ("query_prefix_ids", "doc_prefix_ids", "doc_skiplist_ids", "query_skiplist_ids"):
            check_ids(name, getattr(self, name))
        for name in ("doc_skiplist_ids", "query_skiplist_ids"):
            # [CLS] and [SEP] are what every text keeps: skipping them, a text of skipped tokens (punctuation, or
            # nothing) would have no vector to score, and MaxSim over nothing is −inf
            kept = sorted(set(getattr(self, name) or ()) & {self.cls_token_id, self.sep_token_id})
            if kept:
                raise ValueError(
                    f"LiteConfig.{name} holds {kept}, the [CLS] / [SEP] ids (cls_token_id={self.cls_token_id}, "
                    f"sep_token_id={self.sep_token_id}): every text keeps those, so that it always has a vector."
                )
        for name, length in (("query_prefix_ids", self.query_max_length), ("doc_prefix_ids", self.doc_max_length)):
            prefix = getattr(self, name)
            if prefix is not None and len(prefix) + 2 > length:
                raise ValueError(
                    f"LiteConfig.{name} ({len(prefix)} tokens) leaves no room for text within "
                    f"{'query_max_length' if name.startswith('query') else 'doc_max_length'}={length}."
                )
        expansion = self.query_expansion
        if expansion is None:
            return
        keys = {"strategy", "length", "token_id", "attend"}
        if not isinstance(expansion, dict) or set(expansion) != keys:
            raise ValueError(f"LiteConfig.query_expansion needs exactly the keys {sorted(keys)}, got {expansion!r}.")
        if expansion["strategy"] not in ("fixed", "min"):
            raise ValueError(
                f"LiteConfig.query_expansion strategy must be 'fixed' or 'min', got {expansion['strategy']!r}."
            )
        if not isinstance(expansion["attend"], bool):
            raise ValueError(f"LiteConfig.query_expansion attend must be true or false, got {expansion['attend']!r}.")
        token_id = expansion["token_id"]
        if not _is_int(token_id) or token_id < 0 or (_is_int(vocab_size) and token_id >= vocab_size):
            raise ValueError(
                f"LiteConfig.query_expansion token_id must be a token id of the vocabulary, got {token_id!r}."
            )
        length = expansion["length"]
        fits = length == self.query_max_length if expansion["strategy"] == "fixed" else length <= self.query_max_length
        if not _is_int(length) or length < 2 or not fits:
            need = "equal to" if expansion["strategy"] == "fixed" else "at most"
            raise ValueError(
                f"LiteConfig.query_expansion length must be an integer {need} query_max_length="
                f"{self.query_max_length} (strategy {expansion['strategy']!r}), got {length!r}."
            )


def _listed(ids):
    return list(ids) if isinstance(ids, tuple) else ids


def _is_int(value) -> bool:
    """An integer, not a bool (JSON `true` reads as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["LiteConfig"]
