"""A second real re-ranking domain, out of the Debian one the project trains on (issue 56): the Python standard
library's own documentation, in BEIR layout.

    python scripts/make_python_docs.py --output-dir data/python-docs

Each public function, class and method of a standard-library module whose docstring has a summary (its first
paragraph, four words or more) and a body (the rest, fifteen words or more) gives one query, the summary ("Return the
number of items in a deque."), and one passage, the body, which is its only relevant passage. Objects whose summary
or body repeats another's are dropped (the first, in module order, is kept), so every query has one answer. All
queries form the `test` split: nothing is trained or tuned on it, and each final model is evaluated on it once. The
candidates are BM25's top 30 over all bodies (runs/bm25.test.trec, the Debian set's BM25: ties by passage id).
provenance.json records the Python version, the modules read, the counts and every file's sha256. Which objects a
module has depends on the Python release, so the folder is built once and committed; rebuilding it with another
release gives another set (the script refuses to overwrite a folder).
"""

import argparse
import contextlib
import importlib
import inspect
import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# modules that open windows, print on import, download, or only exist for packaging and tests
SKIPPED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc_data", "lib2to3", "ensurepip"}
SKIPPED |= {"test", "venv", "__hello__", "__phello__", "xxsubtype", "xxlimited", "xxlimited_35"}
MIN_SUMMARY_WORDS, MIN_BODY_WORDS, DEPTH = 4, 15, 30
SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->|-->|$)", re.S)  # "iter(iterable) -> iterator", "sorted(iterable, /)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=str(ROOT / "data" / "python-docs"), help="a new or empty folder")
    return parser.parse_args(argv)


def modules() -> list[tuple[str, object]]:
    """The standard library's public modules that import quietly here, by name."""
    found = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIPPED:
            continue
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            try:
                found.append((name, importlib.import_module(name)))
            except BaseException:  # noqa: BLE001 (a module missing on this platform, or one that exits on import)
                continue
    return found


def documented(name: str, module) -> list[tuple[str, str]]:
    """(qualified name, docstring) of the module's own public functions, classes and their public methods."""
    found = []
    for attribute, value in sorted(vars(module).items()):
        if attribute.startswith("_") or getattr(value, "__module__", None) != name:
            continue
        if not (inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value)):
            continue
        found.append((f"{name}.{attribute}", inspect.getdoc(value)))
        if inspect.isclass(value):
            for method, member in sorted(vars(value).items()):
                if not method.startswith("_") and (inspect.isfunction(member) or inspect.ismethoddescriptor(member)):
                    found.append((f"{name}.{attribute}.{method}", inspect.getdoc(member)))
    return [(qualified, doc) for qualified, doc in found if doc]


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary, body): the first paragraph on one line and the rest with its whitespace folded, when both are long
    enough to be a query and a passage."""
    text = inspect.cleandoc(doc).strip()
    if SIGNATURE.match(text.split("\n\n", 1)[0]):  # a C function's docstring opens with its signature: not a summary
        text = text.split("\n\n", 1)[1].strip() if "\n\n" in text else ""
    parts = re.split(r"\n\s*\n", text, maxsplit=1)
    if len(parts) != 2:
        return None
    summary, body = (" ".join(part.split()) for part in parts)
    if len(summary.split()) < MIN_SUMMARY_WORDS or len(body.split()) < MIN_BODY_WORDS:
        return None
    return summary, body


def collect() -> tuple[list[str], list[tuple[str, str, str]]]:
    """(modules read, [(qualified name, summary, body)]), in module order, each summary and body unique."""
    seen_summaries, seen_bodies, pairs, read = set(), set(), [], []
    for name, module in modules():
        read.append(name)
        for qualified, doc in documented(name, module):
            split = split_docstring(doc)
            if split is None or split[0] in seen_summaries or split[1] in seen_bodies:
                continue
            seen_summaries.add(split[0])
            seen_bodies.add(split[1])
            pairs.append((qualified, *split))
    return read, pairs


def main(argv=None):
    sys.path.insert(0, str(ROOT))
    from lite_rerank.bm25 import BM25Index
    from lite_rerank.data import write_trec_run
    from lite_rerank.utils import file_sha256, new_folder_problem, write_gzip_atomically

    args = parse_args(argv)
    out = Path(args.output_dir)
    problem = new_folder_problem(out)
    if problem:
        raise SystemExit(f"error: --output-dir: {problem}; build into a new folder (nothing was written)")
    # read in an isolated interpreter (-I -S: no site-packages), so that no installed package shadows a standard
    # module (setuptools' distutils) and the set depends on the Python release alone
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import make_python_docs as m; "
    code += "print(json.dumps(m.collect()))"
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    read, pairs = json.loads(result.stdout.strip().splitlines()[-1])
    (out / "qrels").mkdir(parents=True)
    (out / "runs").mkdir()
    for name, rows in (
        ("corpus", [{"_id": f"d:{q}", "title": "", "text": body} for q, _, body in pairs]),
        ("queries", [{"_id": f"q:{q}", "text": summary} for q, summary, _ in pairs]),
    ):
        write_gzip_atomically(
            out / f"{name}.jsonl.gz", [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in rows]
        )
    (out / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q:{q}\td:{q}\t1\n" for q, _, _ in pairs)
    )
    index = BM25Index({f"d:{q}": body for q, _, body in pairs})
    ranked = index.search([summary for _, summary, _ in pairs], DEPTH)
    write_trec_run(out / "runs" / "bm25.test.trec", {f"q:{q}": hits for (q, _, _), hits in zip(pairs, ranked)}, "bm25")
    files = sorted(path for path in out.rglob("*") if path.is_file())
    provenance = {
        "source": "the Python standard library's docstrings (inspect.getdoc of public functions, classes, methods)",
        "python": sys.version.split()[0],
        "modules_read": len(read),
        "queries": len(pairs),
        "rule": f"summary ≥ {MIN_SUMMARY_WORDS} words → body ≥ {MIN_BODY_WORDS} words; repeated summaries or bodies "
        "dropped; split: test only; candidates: BM25 top-30 (bm25s, English stop words, ties by id)",
        "command": "python scripts/make_python_docs.py --output-dir " + str(args.output_dir),
        "files_sha256": {path.relative_to(out).as_posix(): file_sha256(path) for path in files},
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    first_hits = sum(hits[0][0] == f"d:{q}" for (q, _, _), hits in zip(pairs, ranked) if hits)
    print(f"{out}: {len(pairs)} queries and passages from {len(read)} modules (Python {provenance['python']}); BM25 "
          f"ranks the answer first for {first_hits}")  # fmt: skip
    return provenance


if __name__ == "__main__":
    main()
