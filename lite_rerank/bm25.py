"""BM25 as the Debian set's first stage made its dev run (bm25s, lower-cased words, English stop words out), with
rankings that do not depend on the CPU: bm25s orders equal scores by a SIMD sort whose order differs between CPUs
(517 of 920 dev queries reordered on an AVX2-only one), so ties are broken by passage id here, and runs are compared
tie-aware."""

from pathlib import Path

TIE_DECIMALS = 4  # TREC runs of the dataset carry 4 decimals: scores equal there are ties


class BM25Index:
    """bm25s over the corpus; `search` ranks by score, then passage id."""

    def __init__(self, corpus: dict[str, str]):
        import bm25s

        self.bm25s = bm25s
        self.doc_ids = list(corpus)
        self.retriever = bm25s.BM25()
        tokens = bm25s.tokenize(list(corpus.values()), stopwords="en", show_progress=False)
        self.retriever.index(tokens, show_progress=False)

    def search(self, texts: list[str], depth: int, whole_ties: bool = False) -> list[list[tuple[str, float]]]:
        """Each text's top `depth` (passage id, score), best first; equal scores in passage-id order. The tie group
        that straddles rank `depth` is always read whole (bm25s is asked for more until its last hit scores below
        the cut: a Debian query can tie a hundred passages), so which of its members make the cut is decided by id.
        With `whole_ties`, every member of that group is returned (more than `depth` hits): what a tie-aware
        comparison with another run needs."""
        depth = min(depth, len(self.doc_ids))
        ranked: list = [None] * len(texts)
        pending, k = list(range(len(texts))), min(len(self.doc_ids), depth + 32)
        while pending:
            tokens = self.bm25s.tokenize([texts[i] for i in pending], stopwords="en", show_progress=False)
            rows, scores = self.retriever.retrieve(tokens, k=k, show_progress=False)
            unfinished = []
            for i, row, score in zip(pending, rows, scores):
                hits = sorted(((self.doc_ids[r], float(s)) for r, s in zip(row, score)), key=tie_order)
                cut = round(hits[depth - 1][1], TIE_DECIMALS)
                if k < len(self.doc_ids) and round(hits[-1][1], TIE_DECIMALS) == cut:
                    unfinished.append(i)  # the group at the cut may go on past the k read
                    continue
                keep = [hit for rank, hit in enumerate(hits) if rank < depth or round(hit[1], TIE_DECIMALS) == cut]
                ranked[i] = keep if whole_ties else keep[:depth]
            pending, k = unfinished, min(len(self.doc_ids), 2 * k)
        return ranked


def tie_order(hit: tuple[str, float]):
    """Sort key of a (passage id, score) hit: score (as a run file rounds it) descending, then id."""
    doc_id, score = hit
    return (-round(score, TIE_DECIMALS), _id_key(doc_id))


def _id_key(doc_id: str):
    """Passage ids in natural order (d9 before d10), any other id as text."""
    head = doc_id.rstrip("0123456789")
    tail = doc_id[len(head) :]
    return (head, int(tail) if tail else -1, doc_id)


def same_ranking(reference: list[tuple[str, float]], hits: list[tuple[str, float]]) -> bool:
    """Whether the top of `hits` is `reference` up to the order of tied passages: every score level of the
    reference holds the same passages in both, except the lowest, which the last rank may cut: there the reference's
    members must be as many, and among the hits' passages of that score (give `hits` deeper than the reference, so
    that the whole tie group is there).

    >>> same_ranking([("d1", 5.0), ("d3", 4.0)], [("d1", 5.0), ("d2", 4.0), ("d3", 4.0)])  # d2, d3 tied at the cut
    True
    >>> same_ranking([("d1", 5.0), ("d3", 4.0)], [("d2", 5.0), ("d1", 4.0), ("d3", 4.0)])
    False
    """
    if len(hits) < len(reference):
        return False

    def levels(run):
        grouped = {}
        for doc_id, score in run:
            grouped.setdefault(round(score, TIE_DECIMALS), set()).add(doc_id)
        return grouped

    ours, theirs = levels(hits[: len(reference)]), levels(reference)
    if not theirs:
        return True
    lowest = min(theirs)
    for score, docs in theirs.items():
        if score == lowest:
            if len(ours.get(score, ())) != len(docs) or not docs <= levels(hits).get(score, set()):
                return False
        elif ours.get(score) != docs:
            return False
    return set(ours) == set(theirs)


def first_stage_run(data, split: str, run, depth: int, out) -> Path:
    """The candidates to re-rank on a BEIR folder's `split`: `run` when given, else DATA/runs/bm25.SPLIT.trec when the
    folder ships one, else BM25 top-`depth` over the corpus made here (OUT/bm25.SPLIT.trec; ties by passage id), for
    the queries judged in qrels/SPLIT.tsv that have a text. Nothing is written when no such query exists."""
    from .data import DataError, find_file, read_beir_texts, read_qrels, write_trec_run

    if run:
        return Path(run)
    data = Path(data)
    shipped = data / "runs" / f"bm25.{split}.trec"
    if shipped.is_file():
        return shipped
    judged = read_qrels(find_file(data, f"qrels/{split}.tsv"))
    queries = read_beir_texts(find_file(data, "queries.jsonl"), with_title=False)
    qids = [qid for qid in judged if qid in queries]
    if not qids:
        raise DataError(
            find_file(data, f"qrels/{split}.tsv"),
            f"none of its {len(judged)} queries is in {find_file(data, 'queries.jsonl')}; nothing to rank",
        )
    print(f"BM25 top-{depth} of {len(qids)} {split} queries over the corpus (no run given)", flush=True)
    index = BM25Index(read_beir_texts(find_file(data, "corpus.jsonl"), with_title=False))
    path = Path(out) / f"bm25.{split}.trec"
    write_trec_run(path, dict(zip(qids, index.search([queries[q] for q in qids], depth))), "bm25")
    return path
