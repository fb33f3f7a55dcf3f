"""LITE (Learnable Late InTEraction) re-ranker configuration.

Self-contained Hub code: imports only `transformers` (and the standard library).
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.configuration_utils import SubConfigSpec

LITE_AUTO_MAP = {
    "AutoConfig": "configuration_lite.LiteConfig",
    "AutoModel": "modeling_lite.LiteModel",
    "AutoModelForSequenceClassification": "modeling_lite.LiteModel",
}


@strict(accept_kwargs=True)
class LiteConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LiteModel`]: a shared BERT-like encoder, a similarity matrix S = Q·Dᵀ between the query's
    and the document's token embeddings, and a scorer on S (Ji et al. 2024, "Efficient Document Ranking with
    Learnable Late Interactions", arXiv:2406.17968).

    Args:
        encoder_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the shared encoder, nested and serialised in config.json. Any BERT-like encoder loadable with
            `AutoModel.from_config` works (DistilBERT, BERT, MiniLM). Defaults to the `distilbert-base-uncased`
            architecture (dim 768, 6 layers, vocab 30522).
        scorer (`str`, *optional*, defaults to `"lite"`):
            `"lite"`: separable LITE (row MLP over the document axis, column MLP over the query axis, linear map to one
            score). `"maxsim"`: ColBERT's Σ_i max_j S_ij, no parameters.
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
    """

    model_type = "lite_reranker"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="distilbert")}

    encoder_config: dict | PreTrainedConfig | None = None
    scorer: Literal["lite", "maxsim"] = "lite"
    query_max_length: int = 30
    doc_max_length: int = 200
    row_hidden_size: int = 2400
    col_hidden_size: int = 360
    activation: str = "relu"
    normalize_embeddings: bool = True
    projection_dim: int | None = None
    doc_stored_tokens: int | None = None
    initializer_range: float = 0.02
    pad_token_id: int = 0
    cls_token_id: int = 101
    sep_token_id: int = 102

    def __post_init__(self, **kwargs):
        # A re-ranker has one output: a raw relevance score, `logits` of shape (batch, 1).
        kwargs.setdefault("num_labels", 1)
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(LITE_AUTO_MAP)

    @property
    def hidden_size(self) -> int:
        """Width of the encoder's token embeddings."""
        return self.encoder_config.hidden_size

    @property
    def embedding_dim(self) -> int:
        """Width of the token vectors the scorer sees (after the optional projection)."""
        return self.projection_dim or self.hidden_size

    @property
    def doc_scored_tokens(self) -> int:
        """Number of document vectors per document the scorer sees (and a cache stores)."""
        return self.doc_stored_tokens or self.doc_max_length

    def validate_architecture(self):
        """Part of `@strict` validation: every field is checked when the config is built or loaded."""
        # A sequence needs room for [CLS] and [SEP].
        minimums = {"query_max_length": 2, "doc_max_length": 2, "row_hidden_size": 1, "col_hidden_size": 1}
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise ValueError(f"LiteConfig.{name} must be at least {minimum}, got {getattr(self, name)}.")
        if self.activation not in ACT2FN:
            raise ValueError(f"LiteConfig.activation={self.activation!r} is unknown; use one of {sorted(ACT2FN)}.")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"LiteConfig.projection_dim must be a positive integer or None, got {self.projection_dim}.")
        if self.doc_stored_tokens is not None and not 1 <= self.doc_stored_tokens <= self.doc_max_length:
            raise ValueError(
                f"LiteConfig.doc_stored_tokens must be between 1 and doc_max_length={self.doc_max_length} "
                f"(it compresses the encoded document tokens), got {self.doc_stored_tokens}."
            )
        encoder_positions = getattr(self.encoder_config, "max_position_embeddings", None)
        if encoder_positions is not None and max(self.query_max_length, self.doc_max_length) > encoder_positions:
            raise ValueError(
                f"LiteConfig query_max_length={self.query_max_length} / doc_max_length={self.doc_max_length} exceed "
                f"the encoder's max_position_embeddings={encoder_positions}."
            )


__all__ = ["LiteConfig"]
