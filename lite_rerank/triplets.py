"""Training rows (query, positive, negatives[, teacher scores]) from MS MARCO or local files, and their batches.

Sources (`--train-data`):
- `microsoft/ms_marco`: v2.1 train rows → (query, a selected passage, an unselected passage of the same row);
- `sentence-transformers/msmarco`: the `bert-ensemble-margin-mse` ids joined to text through `queries` / `corpus`;
  the precomputed margin becomes teacher scores [margin, 0];
- a local .jsonl / .jsonl.gz / .csv / .parquet file, one row per training query, in one of two layouts:
  - triplets: `query`, `positive`, `negative` and optionally `teacher_positive`, `teacher_negative`;
  - listwise (.jsonl / .parquet): `query`, `positive`, `negatives` (a list of passages, hardest first or in any
    order) and optionally `teacher_positive`, `teacher_negatives` (a list of the same length).
  `--hard-negatives K` trains on each row's positive and its first K negatives (every row must have K).
"""

import csv
import random
from pathlib import Path

import datasets
import torch

from .data import DataError, check_text, numbered_lines, read_jsonl

TEXT_COLUMNS = ("query", "positive", "negative")


def _text(path, where, column: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, f"field {column!r} must be a non-empty string, got {value!r:.80}", where)
    return check_text(path, where, column, value)


def _number(path, where, column: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(path, f"field {column!r} must be a number, got {value!r}", where) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise DataError(path, f"field {column!r} must be a finite number, got {value!r}", where)
    return number


def check_row(path, where, row: dict, with_teacher: bool, min_negatives: int = 1) -> dict:
    """The row's fields, validated: non-empty strings, finite numbers for teacher scores, and (listwise rows) at
    least `min_negatives` negatives with one teacher score each."""
    listwise = "negatives" in row
    triplet = {}
    for column in ("query", "positive") if listwise else TEXT_COLUMNS:
        if column not in row:
            raise DataError(path, f"missing field {column!r}", where)
        triplet[column] = _text(path, where, column, row[column])
    if listwise:
        negatives = row["negatives"]
        if not isinstance(negatives, (list, tuple)) or len(negatives) < min_negatives:
            raise DataError(
                path,
                f"field 'negatives' must be a list of at least {min_negatives} passage(s), got {negatives!r:.80}",
                where,
            )
        triplet["negatives"] = [_text(path, where, f"negatives[{i}]", text) for i, text in enumerate(negatives)]
    elif min_negatives > 1:
        raise DataError(
            path,
            f"--hard-negatives {min_negatives} needs listwise rows with a 'negatives' list; "
            "this row has one 'negative'",
            where,
        )
    if with_teacher:
        triplet["teacher_positive"] = _number(path, where, "teacher_positive", row.get("teacher_positive"))
        if listwise:
            scores = row.get("teacher_negatives")
            if not isinstance(scores, (list, tuple)) or len(scores) != len(negatives):
                raise DataError(
                    path,
                    f"field 'teacher_negatives' must be a list of {len(negatives)} numbers (one "
                    f"per negative), got {scores!r:.80}",
                    where,
                )
            triplet["teacher_negatives"] = [
                _number(path, where, f"teacher_negatives[{i}]", v) for i, v in enumerate(scores)
            ]
        else:
            triplet["teacher_negative"] = _number(path, where, "teacher_negative", row.get("teacher_negative"))
    return triplet


def negatives_of(row: dict) -> list[str]:
    return row["negatives"] if "negatives" in row else [row["negative"]]


def teacher_scores_of(row: dict) -> list[float] | None:
    """[positive, negatives...] teacher scores of a validated row, or None."""
    if "teacher_positive" not in row:
        return None
    negatives = row["teacher_negatives"] if "teacher_negatives" in row else [row["teacher_negative"]]
    return [row["teacher_positive"], *negatives]


def load_local_triplets(path, max_rows: int | None = None, min_negatives: int = 1) -> datasets.Dataset:
    """A local triplet or listwise file, every row validated before training starts (errors name file, line and
    field)."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = datasets.Dataset.from_parquet(str(path))
        header, numbered_rows = table.column_names, ((f"row {i}", row) for i, row in enumerate(table))
    elif path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        numbered_rows, header = read_jsonl(path), None
    elif path.name.endswith((".csv", ".csv.gz")):
        reader = csv.DictReader(line for _, line in numbered_lines(path))
        header = reader.fieldnames or []
        numbered_rows = ((reader.line_num, row) for row in reader)
    else:
        raise DataError(path, "unknown triplet format (use .jsonl, .jsonl.gz, .csv or .parquet)")
    if header is not None:
        wanted = ("query", "positive", "negatives") if "negatives" in header else TEXT_COLUMNS
        missing = [column for column in wanted if column not in header]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; found {list(header)}")
    with_teacher = None
    rows = []
    for where, row in numbered_rows:
        if with_teacher is None:  # the first row decides whether the file carries teacher scores
            with_teacher = "teacher_positive" in row
        rows.append(check_row(path, where, row, with_teacher, min_negatives))
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
            raise DataError(
                "sentence-transformers/msmarco", f"id {error.args[0]} has no text", f"row {index}"
            ) from None


def load_train_dataset(
    spec: str, max_rows: int | None = None, seed: int = 0, log=print, min_negatives: int = 1
) -> datasets.Dataset:
    """`--train-data SPEC` → a Dataset with query/positive/negative(s) (and teacher_* when the source has them)."""
    if Path(spec).exists():
        return load_local_triplets(spec, max_rows, min_negatives)
    if min_negatives > 1:
        raise DataError(spec, f"--hard-negatives {min_negatives} needs a local listwise file ('negatives' lists)")
    if spec in ("microsoft/ms_marco", "ms_marco"):
        rows = datasets.load_dataset("microsoft/ms_marco", "v2.1", split="train")
        if max_rows is not None:
            rows = rows.select(range(min(max_rows, len(rows))))
        counts = {}
        triplets = datasets.Dataset.from_list(list(msmarco_v21_triplets(rows, seed, counts)))
        log(
            f"MS MARCO v2.1: {len(triplets)} triplets from {len(rows)} rows; {counts['skipped']} rows skipped "
            "(no selected or no unselected passage)"
        )
        return triplets
    if spec.startswith("sentence-transformers/msmarco"):
        repo = "sentence-transformers/msmarco"
        triplets = datasets.load_dataset(repo, "bert-ensemble-margin-mse", split="train")
        if max_rows is not None:
            triplets = triplets.select(range(min(max_rows, len(triplets))))
        queries = datasets.load_dataset(repo, "queries", split="train")
        corpus = datasets.load_dataset(repo, "corpus", split="train")
        return datasets.Dataset.from_list(list(margin_mse_triplets(triplets, queries, corpus)))
    if spec.endswith((".jsonl", ".gz", ".json", ".csv", ".parquet")) or spec.startswith((".", "/")):
        raise DataError(spec, "file not found")
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
    """Tokenises a list of training rows in the DataLoader workers: each row's query, its positive and its first
    `hard_negatives` negatives (n = 1 + hard_negatives documents per query, the positive first).

    Returns, with dynamic padding,
    - for a late-interaction student: query ids (batch, L) and document ids (batch, n, L);
    - with `pairs=True` (a cross-encoder student): `pair_*` tokens of the batch·n `[CLS] query [SEP] doc [SEP]`
      pairs, cut to query_max_length + doc_max_length tokens;
    and the row indices, teacher scores (batch, n) when the rows carry them, and the teacher's pair tokens when a
    teacher tokenizer is given.
    """

    def __init__(
        self,
        tokenizer,
        query_max_length: int,
        doc_max_length: int,
        teacher_tokenizer=None,
        teacher_max_length: int = 512,
        hard_negatives: int = 1,
        pairs: bool = False,
    ):
        self.tokenizer, self.query_max_length, self.doc_max_length = tokenizer, query_max_length, doc_max_length
        self.teacher_tokenizer, self.teacher_max_length = teacher_tokenizer, teacher_max_length
        self.hard_negatives, self.pairs = hard_negatives, pairs

    def tokens(self, texts, max_length):
        return self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )

    def __call__(self, rows):
        per_query = 1 + self.hard_negatives
        queries = [row["query"] for row in rows]
        documents = [text for row in rows for text in (row["positive"], *negatives_of(row)[: self.hard_negatives])]
        repeated_queries = [query for query in queries for _ in range(per_query)]
        batch = {"rows": torch.tensor([row["row"] for row in rows])}
        if self.pairs:
            pair_tokens = self.tokenizer(
                repeated_queries,
                documents,
                padding=True,
                truncation=True,
                max_length=self.query_max_length + self.doc_max_length,
                return_tensors="pt",
            )
            batch.update({f"pair_{key}": value for key, value in pair_tokens.items()})
        else:
            query_tokens = self.tokens(queries, self.query_max_length)
            doc_tokens = self.tokens(documents, self.doc_max_length)
            batch["query_input_ids"] = query_tokens["input_ids"]
            batch["query_attention_mask"] = query_tokens["attention_mask"]
            batch["doc_input_ids"] = doc_tokens["input_ids"].view(len(rows), per_query, -1)
            batch["doc_attention_mask"] = doc_tokens["attention_mask"].view(len(rows), per_query, -1)
        teacher_scores = [teacher_scores_of(row) for row in rows]
        if teacher_scores[0] is not None:
            batch["teacher_scores"] = torch.tensor([scores[:per_query] for scores in teacher_scores])
        if self.teacher_tokenizer is not None:
            pairs = self.teacher_tokenizer(
                repeated_queries,
                documents,
                padding=True,
                truncation=True,
                max_length=self.teacher_max_length,
                return_tensors="pt",
            )
            batch["teacher_inputs"] = dict(pairs)
        return batch
