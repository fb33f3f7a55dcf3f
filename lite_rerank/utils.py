"""Small helpers shared by the scripts and the package (the Hub files keep their own copies to stay self-contained)."""

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

import torch


def file_sha256(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def content_fingerprint(path, edge: int = 1 << 20) -> str:
    """A cheap identity of a (possibly large) file: its size and the sha256 of its first and last `edge` bytes."""
    size = Path(path).stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(edge))
        handle.seek(max(edge, size - edge))
        digest.update(handle.read(edge))
    return f"{size} bytes, sha256 of first and last MB {digest.hexdigest()[:16]}"


# Sequences of similar length run together (speed only): a new group starts once a sequence is shorter than
# LENGTH_GROUP_RATIO × the group's longest and the group holds LENGTH_GROUP_MIN_ROWS sequences. On CPU a batch
# padded to 230 tokens costs several times one padded to its real ~90.
LENGTH_GROUP_MIN_ROWS, LENGTH_GROUP_RATIO = 8, 0.75


def nested_sample(population: int, size: int, seed: int = 2024) -> list[int]:
    """`size` indices out of `population`, the first `size` of one seeded permutation: a sample is a subset of every
    larger one drawn from the same population (and its order a prefix of theirs)."""
    return torch.randperm(population, generator=torch.Generator().manual_seed(seed))[:size].tolist()


def length_groups(
    lengths: list[int], min_rows: int = LENGTH_GROUP_MIN_ROWS, ratio: float = LENGTH_GROUP_RATIO
) -> list[list[int]]:
    """Row indices, longest first, cut into groups whose sequences are at least `ratio` × the group's longest.

    >>> length_groups([10, 200, 12, 190, 11, 205], min_rows=2, ratio=0.75)
    [[5, 1, 3], [2, 4, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
    groups = [[order[0]]]
    for row in order[1:]:
        group = groups[-1]
        if len(group) >= min_rows and lengths[row] < ratio * lengths[group[0]]:
            groups.append([row])
        else:
            group.append(row)
    return groups


def named_paths(flag: str, specs: list[str], error, bare: bool = False) -> dict[str, str]:
    """{NAME: PATH} of a repeated `NAME=PATH` flag, in order (split at the first "="). A name given twice would
    overwrite a result without a word, so it is refused through `error` (an argparse parser's), as is a spec without
    a name or a path; with `bare`, a plain PATH is its own name.

    >>> named_paths("--run", ["LITE=runs/lite.trec", "runs/bm25.trec"], print, bare=True)
    {'LITE': 'runs/lite.trec', 'runs/bm25.trec': 'runs/bm25.trec'}
    >>> named_paths("--run", ["a=x.trec", "a=y.trec"], print)
    --run 'a=y.trec': the name 'a' is given twice
    {'a': 'x.trec'}
    """
    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep and bare:
            name, path = spec, spec
        if not name or not path:
            error(f"{flag} {spec!r}: expected NAME=PATH")
        elif name in named:
            error(f"{flag} {spec!r}: the name {name!r} is given twice")
        else:
            named[name] = path
    return named


def file_tag(name: str) -> str:
    """A row name as it appears in file names (eval_rerank.py's TREC runs and document caches)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def result_run_path(results, name: str) -> Path:
    """The TREC run eval_rerank.py wrote for row `name` beside its results JSON `results` (RESULTS.STEM.TAG.trec)."""
    results = Path(results)
    return results.with_name(f"{results.stem}.{file_tag(name)}.trec")


def selection_curve(metrics_path) -> dict[int, float]:
    """MRR@10 by step of the evaluations a training logged in its metrics.jsonl (train_accelerate.py names its
    --dev-data evaluations dev_*, whichever split that is). A resumed run logs the steps after its checkpoint again:
    the later record of a step is the one the run's checkpoints hold."""
    curve = {}
    for line in Path(metrics_path).read_text().splitlines():
        record = json.loads(line)
        if "dev_mrr@10" in record:
            curve[record["step"]] = record["dev_mrr@10"]
    return dict(sorted(curve.items()))


@contextlib.contextmanager
def eval_mode(model):
    """Scores must not depend on dropout: eval for the block, then the previous mode, also after an exception."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def write_atomically(path, write) -> Path:
    """`write(tmp_path)`, then rename it to `path`: a crash never leaves `path` half-written."""
    path = Path(path)
    partial = path.with_name(f".partial-{path.name}")
    try:
        write(partial)
    except BaseException:  # a full disk, an interrupt: the half-written file is this function's, and goes
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return path


def write_gzip_atomically(path, chunks) -> Path:
    """The byte `chunks` gzipped, written atomically; no name and no time in the gzip header, so the same content
    always gives the same bytes."""
    import gzip

    def write(partial):
        with open(partial, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
            for chunk in chunks:
                out.write(chunk)

    return write_atomically(path, write)


def write_text_atomically(path, text: str) -> Path:
    return write_atomically(path, lambda partial: partial.write_text(text))


def run_entry_script(step: str, command: list[str], cwd):
    """One stage of a multi-step job: a repository script in a fresh Python process (as a user runs it), its command
    and wall time printed; a failure stops the job."""
    import subprocess
    import sys
    import time

    print(f"\n=== {step}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=cwd, check=True)
    print(f"=== {step}: {time.perf_counter() - start:.0f} s", flush=True)


def process_state():
    """Accelerate's `PartialState` for a script that may run under `accelerate launch`: several CPU processes
    (gloo) when no GPU is present or ACCELERATE_USE_CPU is set, as `Accelerator` does for training."""
    import os

    from accelerate import PartialState

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    return PartialState(cpu=use_cpu)


def provenance_path(path) -> Path:
    """The provenance record next to a `.jsonl.gz` output of teacher_scores.py (X.jsonl.gz → X.provenance.json)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl.gz") + ".provenance.json")


def refuse_outputs_over_inputs(outputs, inputs, where: str = "this run"):
    """The one rule of every command that writes files: no output may be, or hold, one of its inputs. `outputs` and
    `inputs` are (flag, path) pairs; an input folder stands for every file in it, an output folder for every file
    it may hold. Called before any work; the error names both flags and says nothing was written.

    >>> refuse_outputs_over_inputs([("--output", "a.json")], [("--data", "b.json")])  # distinct: nothing happens
    """

    def files(path: Path):
        if path.is_dir():
            return {p.resolve() for p in path.rglob("*") if p.is_file()}
        return {path.resolve()}

    owner = {}
    for flag, path in inputs:
        if path is not None:
            for file in files(Path(path)):
                owner.setdefault(file, flag)
    for flag, path in outputs:
        if path is None:
            continue
        target = Path(path).resolve()
        clash = owner.get(target)
        if clash is None:  # a folder output that holds an input
            clash = next((name for file, name in owner.items() if target in file.parents), None)
        if clash:
            raise SystemExit(
                f"{flag} would write {path}, which is an input of {where} ({clash}); choose another {flag} "
                "(nothing was written)"
            )


def new_folder_problem(path) -> str | None:
    """None when `path` may become a new folder of outputs (absent, or an empty folder), else what is there: a
    command that writes a whole folder never writes into one that holds anything, a model above all.

    >>> new_folder_problem("/nonexistent/new-folder") is None
    True
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} exists and is a file, not a folder"
    if any(path.iterdir()):
        return f"{path} exists and is not an empty folder"
    return None


# LiteConfig fields a multi-vector model brings (issue 37); in a fingerprint only when set, so older ones stay valid
MULTI_VECTOR_FIELDS = (
    "query_prefix_ids",
    "doc_prefix_ids",
    "query_expansion",
    "doc_skiplist_ids",
    "query_skiplist_ids",
)
# fields off by default that a fingerprint includes only when set (older fingerprints, and caches, stay valid)
OPTIONAL_VECTOR_FIELDS = (*MULTI_VECTOR_FIELDS, "query_token_weights")
# LiteConfig fields the query and document vectors depend on, and those the scorer on them adds
VECTOR_FIELDS = (
    "encoder_config",
    "query_max_length",
    "doc_max_length",
    "projection_dim",
    "doc_stored_tokens",
    "normalize_embeddings",
    *OPTIONAL_VECTOR_FIELDS,
)
SCORER_FIELDS = ("scorer", "row_hidden_size", "col_hidden_size", "activation")
# keys of a config's dict that say where it came from or how it was saved, not what it computes
_BOOKKEEPING = {
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "architectures",
    "_commit_hash",
    "_attn_implementation_autoset",
    "auto_map",
    "tokenizer_class",
}


def weights_fingerprint(model, fields, skip_prefix: str | tuple[str, ...] | None = None, dtype=torch.float32) -> str:
    """sha256 of what a LITE model computes: the config `fields` (bookkeeping keys such as the path it was loaded
    from, or the release that saved it, left out) and every weight, as `dtype` (names starting with `skip_prefix`
    left out; a tuple gives several). A model loaded from another path, or saved again, has the same fingerprint."""

    def canonical(value):
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in sorted(value.items()) if k not in _BOOKKEEPING}
        return value

    config = model.config.to_dict()
    chosen = {
        f: config.get(f) for f in fields if f not in OPTIONAL_VECTOR_FIELDS or config.get(f) not in (None, False)
    }
    digest = hashlib.sha256(json.dumps(canonical(chosen), default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if skip_prefix is None or not name.startswith(skip_prefix):
            digest.update(name.encode())
            digest.update(tensor.detach().to(dtype).float().cpu().numpy().tobytes())
    return digest.hexdigest()
