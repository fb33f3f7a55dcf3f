"""Readers for re-ranking data: BEIR folders, TREC runs, qrels and MS MARCO v2.1 rows.

Every reader fails on bad input with a `DataError` that names the file, the line and the problem, before any model
work starts.
"""

import gzip
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad input data; the message names the file, the line (when there is one) and the problem."""

    def __init__(self, path, problem: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def numbered_lines(path):
    """Yield (line number, line) of a UTF-8 text file, gzipped when its name ends in .gz; a byte-order mark at its start
    is skipped as standard readers do (Excel and Windows tools write one). A line that is not UTF-8, or a .gz cut short,
    fails with a `DataError` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    line_no = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as lines:
            for line_no, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    raise DataError(
                        path,
                        f"not UTF-8 text (byte {raw[error.start : error.start + 1]!r} at column {error.start + 1}); "
                        "save the file as UTF-8",
                        line_no,
                    ) from None
                yield line_no, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(
            path, f"the compressed file is damaged or cut short ({error}); copy or download it again", line_no + 1
        ) from None


def check_text(path, where, field: str, value) -> str:
    """`value` if it is a string that can be written as UTF-8 (no lone surrogates, which tokenizers refuse)."""
    if not isinstance(value, str):
        raise DataError(path, f"field {field!r} must be a string, got {value!r:.80}", where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataError(
            path,
            f"field {field!r} holds an unpaired surrogate {value[error.start]!r} at character {error.start}",
            where,
        ) from None
    return value


def read_jsonl(path, required=()):
    """Yield (line number, dict) for each non-blank line; every `required` key must be present."""
    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, f"invalid JSON ({error.msg})", line_no) from None
        if not isinstance(row, dict):
            raise DataError(path, "expected a JSON object", line_no)
        missing = [key for key in required if key not in row]
        if missing:
            raise DataError(path, f"missing field(s) {missing}", line_no)
        yield line_no, row


def find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(folder / stem, "file not found (also looked for .gz)")


def read_beir_texts(path, with_title: bool) -> dict[str, str]:
    """`corpus.jsonl` / `queries.jsonl` → {id: text}; a non-empty title is prepended to the text. Ids are compared
    as strings (`1` and `"1"` are the same id): an id given twice is refused with both lines."""
    texts, line_of = {}, {}
    for line_no, row in read_jsonl(path, required=("_id", "text")):
        doc_id = str(row["_id"])
        if doc_id in line_of:
            raise DataError(path, f"id {doc_id!r} is given twice (first at line {line_of[doc_id]})", line_no)
        text = check_text(path, line_no, "text", row["text"])
        title = row.get("title")
        if with_title and title:
            text = f"{check_text(path, line_no, 'title', title)} {text}"
        texts[doc_id], line_of[doc_id] = text, line_no
    if not texts:
        raise DataError(path, "no rows")
    return texts


def read_qrels(path) -> dict[str, dict[str, int]]:
    """BEIR `query-id corpus-id score` TSV (with header) or TREC `qid 0 docid rel` → {qid: {docid: grade}}. Grades
    are integers (BEIR, trec_eval); a (query, document) pair judged twice is refused with both lines."""
    qrels: dict[str, dict[str, int]] = {}
    line_of: dict[tuple[str, str], int] = {}
    for line_no, line in numbered_lines(path):
        fields = line.split()
        if not fields or (line_no == 1 and fields[0] == "query-id"):
            continue
        if len(fields) == 3:
            qid, docid, grade = fields
        elif len(fields) == 4:
            qid, _, docid, grade = fields
        else:
            raise DataError(path, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(fields)}", line_no)
        try:
            value = int(grade)
        except ValueError:
            problem = "is not an integer (graded relevance is 0, 1, 2, …)" if _is_number(grade) else "is not a number"
            raise DataError(path, f"relevance {grade!r} {problem}", line_no) from None
        if (qid, docid) in line_of:
            raise DataError(
                path, f"query {qid} judges document {docid} twice (first at line {line_of[qid, docid]})", line_no
            )
        line_of[qid, docid] = line_no
        qrels.setdefault(qid, {})[docid] = value
    if not qrels:
        raise DataError(path, "no judgments")
    return qrels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_trec_run(path) -> dict[str, list[tuple[str, float]]]:
    """TREC run `qid Q0 docid rank score tag` → {qid: [(docid, score), ...]} in rank order."""
    ranked: dict[str, list[tuple[int, str, float]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for line_no, line in numbered_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise DataError(path, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(fields)}", line_no)
        qid, _, docid, rank, score, _ = fields
        if (qid, docid) in seen:  # a document counted twice would inflate nDCG and Recall past 1
            raise DataError(
                path,
                f"document {docid} is listed twice for query {qid} (first at line {seen[qid, docid]})",
                line_no,
            )
        seen[qid, docid] = line_no
        try:
            rank_value, score_value = int(rank), float(score)
        except ValueError:
            raise DataError(path, f"rank {rank!r} or score {score!r} is not a number", line_no) from None
        if not math.isfinite(score_value):
            raise DataError(path, f"score {score!r} is not a finite number; the run file is damaged", line_no)
        ranked.setdefault(qid, []).append((rank_value, docid, score_value))
    if not ranked:
        raise DataError(path, "no candidates")
    return {qid: [(docid, score) for _, docid, score in sorted(rows)] for qid, rows in ranked.items()}


def write_trec_run(path, rankings: dict[str, list[tuple[str, float]]], tag: str):
    """Write {qid: [(docid, score), ...] best first} as a TREC run file."""
    with open(path, "w", encoding="utf-8") as out:
        for qid, ranking in rankings.items():
            for rank, (docid, score) in enumerate(ranking, start=1):
                out.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")


class ArrowTexts:
    """{id: text} read from a memory-mapped Arrow table (a `datasets.Dataset` with `_id`, `text` and optional `title`):
    a corpus larger than memory costs its ids, not its texts. Behaves like the dict `read_beir_texts` returns."""

    def __init__(self, dataset, with_title: bool = True, source="the corpus"):
        self.dataset, self.with_title = dataset, with_title and "title" in dataset.column_names
        self.source = source
        self.row_of = {}
        for row, doc_id in enumerate(dataset["_id"]):
            doc_id = str(doc_id)
            if doc_id in self.row_of:  # row r is line r + 1 of a JSONL file
                raise DataError(
                    source, f"id {doc_id!r} is given twice (first at row {self.row_of[doc_id] + 1})", row + 1
                )
            self.row_of[doc_id] = row

    def __len__(self):
        return len(self.row_of)

    def __contains__(self, doc_id):
        return doc_id in self.row_of

    def __iter__(self):
        return iter(self.row_of)

    def __getitem__(self, doc_id: str) -> str:
        return self.texts([doc_id])[0]

    def texts(self, ids) -> list[str]:
        rows = self.dataset.select([self.row_of[doc_id] for doc_id in ids])
        titles = rows["title"] if self.with_title else [""] * len(rows)
        for doc_id, text in zip(ids, rows["text"]):
            if not isinstance(text, str):
                raise DataError(
                    self.source, f"passage {doc_id!r} has no text (text is {text!r})", self.row_of[doc_id] + 1
                )
        return [f"{title} {text}" if title else text for title, text in zip(titles, rows["text"])]


def read_corpus(path, in_memory_limit: int = 256 << 20):
    """A BEIR corpus: a dict (every row checked, errors with file:line) when the file is under `in_memory_limit`
    bytes, else memory-mapped Arrow (`ArrowTexts`, via `datasets`; converted once and cached by datasets)."""
    if Path(path).stat().st_size < in_memory_limit:
        return read_beir_texts(path, with_title=True)
    import datasets

    return ArrowTexts(datasets.load_dataset("json", data_files=str(path), split="train"), source=path)


class SubsetTexts:
    """The texts of `ids` only, read through from a larger mapping (dict or `ArrowTexts`) without copying it."""

    def __init__(self, texts, ids):
        self.source, self.ids = texts, list(dict.fromkeys(ids))
        self._ids = set(self.ids)

    def __len__(self):
        return len(self.ids)

    def __contains__(self, doc_id):
        return doc_id in self._ids

    def __iter__(self):
        return iter(self.ids)

    def __getitem__(self, doc_id):
        if doc_id not in self._ids:
            raise KeyError(doc_id)
        return self.source[doc_id]

    def items(self):
        return ((doc_id, self.source[doc_id]) for doc_id in self.ids)

    def texts(self, ids) -> list[str]:
        missing = [doc_id for doc_id in ids if doc_id not in self._ids]
        if missing:
            raise KeyError(missing[0])
        return texts_of(self.source, ids)


def texts_of(texts, ids) -> list[str]:
    """`[texts[i] for i in ids]`, in one read for an Arrow-backed mapping."""
    return texts.texts(ids) if hasattr(texts, "texts") else [texts[doc_id] for doc_id in ids]


@dataclass
class RerankSet:
    """Queries, their first-stage candidates (in first-stage order) and relevance judgments."""

    queries: dict[str, str]
    documents: dict[str, str]
    candidates: dict[str, list[str]]
    first_stage_scores: dict[str, list[float]]
    qrels: dict[str, dict[str, int]]
    protocol: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return max((len(docs) for docs in self.candidates.values()), default=0)

    def subset(self, qids) -> "RerankSet":
        """The same data restricted to `qids` (e.g. one process's shard of the dev queries)."""
        qids = list(qids)
        return RerankSet(
            queries={q: self.queries[q] for q in qids},
            documents=SubsetTexts(self.documents, sorted({d for q in qids for d in self.candidates[q]})),
            candidates={q: self.candidates[q] for q in qids},
            first_stage_scores={q: self.first_stage_scores[q] for q in qids},
            qrels={q: self.qrels[q] for q in qids},
            protocol=self.protocol,
        )


def load_beir_rerank_set(folder, run_path, split: str = "dev", max_queries: int | None = None) -> RerankSet:
    """A BEIR folder plus a TREC run of candidates. Evaluated queries: those with a relevant judgment."""
    folder = Path(folder)
    qrels = read_qrels(find_file(folder / "qrels", f"{split}.tsv"))
    run = read_trec_run(run_path)
    queries = read_beir_texts(find_file(folder, "queries.jsonl"), with_title=False)
    corpus = read_corpus(find_file(folder, "corpus.jsonl"))
    counts = dict.fromkeys(
        (
            "queries_without_candidates",
            "run_queries_without_judgments",
            "queries_without_text",
            "candidates_missing_from_corpus",
            "judged_documents_missing_from_corpus",
            "queries_with_empty_text",
        ),
        0,
    )
    counts["run_queries_without_judgments"] = sum(
        1 for qid in run if not any(g > 0 for g in qrels.get(qid, {}).values())
    )
    selected, candidates, scores = {}, {}, {}
    for qid, judged in qrels.items():
        if not any(grade > 0 for grade in judged.values()):
            continue
        if qid not in queries:
            counts["queries_without_text"] += 1
            continue
        if max_queries is not None and len(selected) >= max_queries:
            break
        ranking = run.get(qid, [])
        if not ranking:
            counts["queries_without_candidates"] += 1
        kept = [(docid, score) for docid, score in ranking if docid in corpus]
        counts["candidates_missing_from_corpus"] += len(ranking) - len(kept)
        counts["judged_documents_missing_from_corpus"] += sum(1 for docid in judged if docid not in corpus)
        counts["queries_with_empty_text"] += not queries[qid].strip()
        selected[qid] = queries[qid]
        candidates[qid] = [docid for docid, _ in kept]
        scores[qid] = [score for _, score in kept]
    judged = sum(len(qrels[qid]) for qid in selected)
    if selected and counts["judged_documents_missing_from_corpus"] == judged:
        raise DataError(
            find_file(folder / "qrels", f"{split}.tsv"),
            f"none of the {judged} judged documents is in {find_file(folder, 'corpus.jsonl')}: every metric would be "
            "0; are the qrels and the corpus from the same collection (ids, prefixes)?",
        )
    needed = sorted({docid for docs in candidates.values() for docid in docs})  # the same order in every process
    if not needed:
        raise DataError(
            run_path,
            f"none of its lines names a query judged relevant in {find_file(folder / 'qrels', f'{split}.tsv')} "
            f"({len(selected)} such queries with text) together with a passage of {find_file(folder, 'corpus.jsonl')}: "
            "there is nothing to re-rank; is the run from this collection and split (ids, prefixes)?",
        )
    return RerankSet(
        queries=selected,
        documents=SubsetTexts(corpus, needed) if isinstance(corpus, ArrowTexts) else {d: corpus[d] for d in needed},
        candidates=candidates,
        first_stage_scores=scores,
        qrels={qid: qrels[qid] for qid in selected},
        protocol=f"rerank {Path(run_path).name} candidates of BEIR {folder.name} ({split})",
        counts=counts,
    )


def msmarco_own_pool_set(rows, max_queries: int | None = None, source: str = "microsoft/ms_marco v2.1") -> RerankSet:
    """MS MARCO v2.1 rows → each query re-ranks its own ~10 passages, `is_selected` as labels (the easy protocol)."""
    queries, documents, candidates, scores, qrels = {}, {}, {}, {}, {}
    skipped = 0
    for row in rows:
        passages = row["passages"]
        if not any(passages["is_selected"]):
            skipped += 1
            continue
        if max_queries is not None and len(queries) >= max_queries:
            break
        qid = str(row["query_id"])
        docids = [f"{qid}-{i}" for i in range(len(passages["passage_text"]))]
        queries[qid] = row["query"]
        documents.update(zip(docids, passages["passage_text"]))
        candidates[qid] = docids
        scores[qid] = [-float(i) for i in range(len(docids))]  # the given order is the "first stage"
        qrels[qid] = {docid: int(selected) for docid, selected in zip(docids, passages["is_selected"])}
    return RerankSet(
        queries=queries,
        documents=documents,
        candidates=candidates,
        first_stage_scores=scores,
        qrels=qrels,
        protocol=f"{source} validation, own pool: each query re-ranks its own ~10 passages (easy protocol, not "
        "comparable to full-corpus MS MARCO dev figures)",
        counts={"queries_without_selected_passage": skipped},
    )


def load_rerank_set(spec: str, split: str | None = None, run: str | None = None, max_queries: int | None = None):
    """`--data SPEC` of eval_rerank.py and train_accelerate.py's dev set:
    - a BEIR folder (needs `run`, a TREC run file of candidates);
    - `microsoft/ms_marco` (v2.1 from the Hub) or a local .jsonl/.parquet file in the v2.1 schema (own pool).
    """
    path = Path(spec)
    if path.is_dir():
        if run is None:
            raise DataError(path, "a BEIR folder needs --run, a TREC run file of candidates")
        return load_beir_rerank_set(path, run, split or "dev", max_queries)
    if spec in ("microsoft/ms_marco", "ms_marco"):
        import datasets

        rows = datasets.load_dataset("microsoft/ms_marco", "v2.1", split=split or "validation", streaming=True)
        return msmarco_own_pool_set(rows, max_queries)
    if path.is_file():
        if path.suffix == ".parquet":
            import datasets

            rows = datasets.Dataset.from_parquet(str(path))
        else:
            rows = (row for _, row in read_jsonl(path, required=("query", "query_id", "passages")))
        return msmarco_own_pool_set(rows, max_queries, source=str(path))
    raise DataError(path, "not a BEIR folder, an MS MARCO v2.1 file, or 'microsoft/ms_marco'")
