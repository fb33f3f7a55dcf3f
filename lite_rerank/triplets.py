"""Training triplets (query, positive, negative[, teacher scores]) from MS MARCO or local files, and their batches.

Sources (`--train-data`):
- `microsoft/ms_marco`: v2.1 train rows → (query, a selected passage, an unselected passage of the same row);
- `sentence-transformers/msmarco`: the `bert-ensemble-margin-mse` ids joined to text through `queries` / `corpus`;
  the precomputed margin becomes teacher scores [margin, 0];
- a local .jsonl / .jsonl.gz / .csv / .parquet file with `query`, `positive`, `negative` and optionally
  `teacher_positive`, `teacher_negative`.
"""

import csv
import random
from pathlib import Path

import datasets
import torch

from .data import DataError, open_text, read_jsonl

TEXT_COLUMNS = ("query", "positive", "negative")
TEACHER_COLUMNS = ("teacher_positive", "teacher_negative")


def check_row(path, where, row: dict, with_teacher: bool) -> dict:
    """The row's triplet fields, validated: non-empty strings, and numbers for teacher scores."""
    triplet = {}
    for column in TEXT_COLUMNS:
        if column not in row:
            raise DataError(path, f"missing field {column!r}", where)
        value = row[column]
        if not isinstance(value, str) or not value.strip():
            raise DataError(path, f"field {column!r} must be a non-empty string, got {value!r}", where)
        triplet[column] = value
    for column in TEACHER_COLUMNS if with_teacher else ():
        try:
            triplet[column] = float(row.get(column))
        except (TypeError, ValueError):
            raise DataError(path, f"field {column!r} must be a number, got {row.get(column)!r}", where) from None
    return triplet


def load_local_triplets(path, max_rows: int | None = None) -> datasets.Dataset:
    """A local triplet file, every row validated before training starts (errors name file, line and field)."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = datasets.Dataset.from_parquet(str(path))
        header, numbered_rows = table.column_names, ((f"row {i}", row) for i, row in enumerate(table))
    elif path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        numbered_rows, header = read_jsonl(path), None
    elif path.name.endswith((".csv", ".csv.gz")):
        handle = open_text(path)
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        numbered_rows = ((reader.line_num, row) for row in reader)
    else:
        raise DataError(path, "unknown triplet format (use .jsonl, .jsonl.gz, .csv or .parquet)")
    if header is not None:
        missing = [column for column in TEXT_COLUMNS if column not in header]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; found {list(header)}")
    with_teacher = None
    rows = []
    for where, row in numbered_rows:
        if with_teacher is None:  # the first row decides whether the file carries teacher scores
            with_teacher = all(column in row for column in TEACHER_COLUMNS)
        rows.append(check_row(path, where, row, with_teacher))
        if max_rows is not None and len(rows) >= max_rows:
            break
    if not rows:
        raise DataError(path, "no triplets (empty file)")
    return datasets.Dataset.from_list(rows)


def msmarco_v21_triplets(rows, seed: int = 0, counts: dict | None = None):
    """MS MARCO v2.1 rows → triplets: the first selected passage and a (seeded) random unselected one.

    Rows without a selected or without an unselected passage are skipped and counted in `counts["skipped"]`.
    """
    counts = counts if counts is not None else {}
    counts.setdefault("skipped", 0)
    for index, row in enumerate(rows):
        passages = row["passages"]
        selected = [text for text, flag in zip(passages["passage_text"], passages["is_selected"]) if flag]
        unselected = [text for text, flag in zip(passages["passage_text"], passages["is_selected"]) if not flag]
        if not selected or not unselected:
            counts["skipped"] += 1
            continue
        negative = random.Random(seed * 1_000_003 + index).choice(unselected)
        yield {"query": row["query"], "positive": selected[0], "negative": negative}


def margin_mse_triplets(triplets, queries, corpus):
    """`bert-ensemble-margin-mse` rows (query_id, positive_id, negative_id, score) → text triplets whose teacher
    scores [score, 0] keep the precomputed margin."""
    query_text = {str(row["query_id"]): row["query"] for row in queries}
    passage_text = {str(row["passage_id"]): row["passage"] for row in corpus}
    for index, row in enumerate(triplets):
        try:
            yield {
                "query": query_text[str(row["query_id"])],
                "positive": passage_text[str(row["positive_id"])],
                "negative": passage_text[str(row["negative_id"])],
                "teacher_positive": float(row["score"]),
                "teacher_negative": 0.0,
            }
        except KeyError as error:
            raise DataError("sentence-transformers/msmarco", f"id {error.args[0]} has no text", f"row {index}") from None


def load_train_dataset(spec: str, max_rows: int | None = None, seed: int = 0, log=print) -> datasets.Dataset:
    """`--train-data SPEC` → a Dataset with query/positive/negative (and teacher_* when the source has them)."""
    if Path(spec).exists():
        return load_local_triplets(spec, max_rows)
    if spec in ("microsoft/ms_marco", "ms_marco"):
        rows = datasets.load_dataset("microsoft/ms_marco", "v2.1", split="train")
        if max_rows is not None:
            rows = rows.select(range(min(max_rows, len(rows))))
        counts = {}
        triplets = datasets.Dataset.from_list(list(msmarco_v21_triplets(rows, seed, counts)))
        log(f"MS MARCO v2.1: {len(triplets)} triplets from {len(rows)} rows; {counts['skipped']} rows skipped "
            "(no selected or no unselected passage)")  # fmt: skip
        return triplets
    if spec.startswith("sentence-transformers/msmarco"):
        repo = "sentence-transformers/msmarco"
        triplets = datasets.load_dataset(repo, "bert-ensemble-margin-mse", split="train")
        if max_rows is not None:
            triplets = triplets.select(range(min(max_rows, len(triplets))))
        queries = datasets.load_dataset(repo, "queries", split="train")
        corpus = datasets.load_dataset(repo, "corpus", split="train")
        return datasets.Dataset.from_list(list(margin_mse_triplets(triplets, queries, corpus)))
    raise DataError(spec, "not a local triplet file, 'microsoft/ms_marco' or 'sentence-transformers/msmarco'")


class IndexedTriplets(torch.utils.data.Dataset):
    """Rows of a triplet Dataset with their row index (the key of the teacher-score cache)."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return {**self.dataset[index], "row": index}


class TripletCollator:
    """Tokenises a list of triplet rows in the DataLoader workers.

    Returns query ids (batch, L) and document ids (batch, 2, L) ([positive, negative]) with dynamic padding, the row
    indices, teacher scores (batch, 2) when the rows carry them, and the teacher's pair tokens when a teacher
    tokenizer is given.
    """

    def __init__(self, tokenizer, query_max_length: int, doc_max_length: int, teacher_tokenizer=None,
                 teacher_max_length: int = 512):  # fmt: skip
        self.tokenizer, self.query_max_length, self.doc_max_length = tokenizer, query_max_length, doc_max_length
        self.teacher_tokenizer, self.teacher_max_length = teacher_tokenizer, teacher_max_length

    def tokens(self, texts, max_length):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                              return_token_type_ids=False)  # fmt: skip

    def __call__(self, rows):
        queries = [row["query"] for row in rows]
        documents = [text for row in rows for text in (row["positive"], row["negative"])]
        query_tokens = self.tokens(queries, self.query_max_length)
        doc_tokens = self.tokens(documents, self.doc_max_length)
        batch = {
            "query_input_ids": query_tokens["input_ids"],
            "query_attention_mask": query_tokens["attention_mask"],
            "doc_input_ids": doc_tokens["input_ids"].view(len(rows), 2, -1),
            "doc_attention_mask": doc_tokens["attention_mask"].view(len(rows), 2, -1),
            "rows": torch.tensor([row["row"] for row in rows]),
        }
        if all(column in rows[0] for column in TEACHER_COLUMNS):
            batch["teacher_scores"] = torch.tensor([[row[c] for c in TEACHER_COLUMNS] for row in rows])
        if self.teacher_tokenizer is not None:
            pairs = self.teacher_tokenizer([q for q in queries for _ in range(2)], documents, padding=True,
                                           truncation=True, max_length=self.teacher_max_length, return_tensors="pt")
            batch["teacher_inputs"] = dict(pairs)
        return batch
