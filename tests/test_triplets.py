import gzip
import json

import datasets
import pytest
import torch
from conftest import needs_shared_data, write_jsonl

from lite_rerank.data import DataError
from lite_rerank.triplets import (
    IndexedTriplets,
    TripletCollator,
    load_local_triplets,
    load_train_dataset,
    margin_mse_triplets,
    msmarco_v21_triplets,
)

ROWS = [
    {"query": "q one", "positive": "p one", "negative": "n one", "teacher_positive": 3.5, "teacher_negative": 1},
    {"query": "q two", "positive": "p two", "negative": "n two", "teacher_positive": 0.5, "teacher_negative": 2},
]


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "csv", "parquet"])
def test_local_formats_read_alike(tmp_path, suffix):
    path = tmp_path / f"triplets.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, ROWS)
    elif suffix == "jsonl.gz":
        with gzip.open(path, "wt") as out:
            out.writelines(json.dumps(row) + "\n" for row in ROWS)
    elif suffix == "csv":
        datasets.Dataset.from_list(ROWS).to_csv(str(path), index=False)
    else:
        datasets.Dataset.from_list(ROWS).to_parquet(str(path))
    data = load_train_dataset(str(path))
    assert data.column_names == ["query", "positive", "negative", "teacher_positive", "teacher_negative"]
    assert data[1] == {
        "query": "q two",
        "positive": "p two",
        "negative": "n two",
        "teacher_positive": 0.5,
        "teacher_negative": 2.0,
    }
    assert len(load_train_dataset(str(path), max_rows=1)) == 1


@needs_shared_data
def test_the_debian_triplets_load(tmp_path):
    from conftest import SHARED_DEBIAN

    data = load_local_triplets(SHARED_DEBIAN / "triplets.train.jsonl.gz", max_rows=50)
    assert len(data) == 50 and data.column_names == ["query", "positive", "negative"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "t.jsonl",
            '{"query": "q", "positive": "p", "negative": "n"}\n{"query": "q", "positive": "p"}\n',
            r"t.jsonl:2: missing field 'negative'",
        ),
        (
            "t.jsonl",
            '{"query": "q", "positive": "p", "negative": "n"}\n{"query": "q", "positive": \n',
            r"t.jsonl:2: invalid JSON",
        ),
        ("t.jsonl", '{"query": "", "positive": "p", "negative": "n"}\n', r"t.jsonl:1: field 'query' must be"),
        ("t.jsonl", "", r"t.jsonl: no triplets \(empty file\)"),
        ("t.csv", "query,positive\nq,p\n", r"t.csv: missing column\(s\) \['negative'\]"),
        (
            "t.csv",
            "query,positive,negative,teacher_positive,teacher_negative\nq,p,n,1,2\nq,p,n,high,2\n",
            r"t.csv:3: field 'teacher_positive' must be a number",
        ),
        ("t.txt", "anything", "unknown triplet format"),
    ],
)
def test_bad_triplet_files_name_file_line_and_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_train_dataset(str(path))


def test_msmarco_v21_rows_become_triplets():
    rows = [
        {"query": "a", "passages": {"is_selected": [0, 1, 0, 0], "passage_text": ["n1", "p", "n2", "n3"]}},
        {"query": "b", "passages": {"is_selected": [0, 0], "passage_text": ["x", "y"]}},  # nothing selected
        {"query": "c", "passages": {"is_selected": [1], "passage_text": ["only"]}},  # nothing unselected
        {"query": "d", "passages": {"is_selected": [1, 1, 0], "passage_text": ["p1", "p2", "n"]}},
    ]
    counts = {}
    triplets = list(msmarco_v21_triplets(rows, seed=0, counts=counts))
    assert counts == {"skipped": 2}
    assert [t["query"] for t in triplets] == ["a", "d"]
    assert triplets[0]["positive"] == "p" and triplets[0]["negative"] in {"n1", "n2", "n3"}
    assert triplets[1] == {"query": "d", "positive": "p1", "negative": "n"}
    assert list(msmarco_v21_triplets(rows, seed=0)) == triplets  # seeded: the same negatives every run


def test_margin_mse_ids_join_to_text():
    triplets = datasets.Dataset.from_list(
        [
            {"query_id": "10", "positive_id": "100", "negative_id": "200", "score": 4.25},
            {"query_id": "11", "positive_id": "200", "negative_id": "100", "score": -1.5},
        ]
    )
    queries = datasets.Dataset.from_list([{"query_id": "10", "query": "ten"}, {"query_id": "11", "query": "eleven"}])
    corpus = datasets.Dataset.from_list(
        [{"passage_id": "100", "passage": "P100"}, {"passage_id": "200", "passage": "P200"}]
    )
    rows = list(margin_mse_triplets(triplets, queries, corpus))
    assert rows[1] == {
        "query": "eleven",
        "positive": "P200",
        "negative": "P100",
        "teacher_positive": -1.5,
        "teacher_negative": 0.0,
    }
    broken = datasets.Dataset.from_list([{"query_id": "12", "positive_id": "100", "negative_id": "200", "score": 1.0}])
    with pytest.raises(DataError, match="row 0"):
        list(margin_mse_triplets(broken, queries, corpus))


def test_collator_tokenises_triplets(tokenizer):
    data = IndexedTriplets(datasets.Dataset.from_list(ROWS))
    batch = TripletCollator(tokenizer, 8, 16, teacher_tokenizer=tokenizer)([data[0], data[1]])
    assert batch["query_input_ids"].shape[0] == 2 and batch["doc_input_ids"].shape[:2] == (2, 2)
    assert batch["rows"].tolist() == [0, 1]
    torch.testing.assert_close(batch["teacher_scores"], torch.tensor([[3.5, 1.0], [0.5, 2.0]]))
    positive = tokenizer.decode(batch["doc_input_ids"][1, 0], skip_special_tokens=True)
    assert positive == "p two"
    assert batch["teacher_inputs"]["input_ids"].shape[0] == 4  # (query, pos), (query, neg) per row


LISTWISE = [
    {
        "query": "q one",
        "positive": "p one",
        "negatives": ["n1", "n2", "n3"],
        "teacher_positive": 4.0,
        "teacher_negatives": [1.0, 2.0, 3.0],
    },
    {
        "query": "q two",
        "positive": "p two",
        "negatives": ["m1", "m2"],
        "teacher_positive": 0.5,
        "teacher_negatives": [-1.0, 0.25],
    },
]


def test_listwise_rows_give_k_hard_negatives_and_their_teacher_scores(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "listwise.jsonl", LISTWISE)
    data = IndexedTriplets(load_train_dataset(str(path), min_negatives=2))
    batch = TripletCollator(tokenizer, 8, 16, hard_negatives=2)([data[0], data[1]])
    assert batch["doc_input_ids"].shape[:2] == (2, 3)
    decoded = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch["doc_input_ids"][1]]
    assert decoded == ["p two", "m1", "m2"]
    torch.testing.assert_close(batch["teacher_scores"], torch.tensor([[4.0, 1.0, 2.0], [0.5, -1.0, 0.25]]))
    pairs = TripletCollator(tokenizer, 8, 16, hard_negatives=2, pairs=True)([data[0], data[1]])
    assert "query_input_ids" not in pairs and pairs["pair_input_ids"].shape[0] == 6
    first = tokenizer.decode(pairs["pair_input_ids"][4], skip_special_tokens=False).replace(" [PAD]", "")
    assert first == "[CLS] q two [SEP] m1 [SEP]"
    assert set(pairs["pair_token_type_ids"][4].tolist()) == {0, 1}  # BERT pair segments


@pytest.mark.parametrize(
    "rows, min_negatives, message",
    [
        ([LISTWISE[0], LISTWISE[1]], 3, r"l.jsonl:2: field 'negatives' must be a list of at least 3"),
        (
            [{**LISTWISE[0], "teacher_negatives": [1.0]}],
            1,
            r"l.jsonl:1: field 'teacher_negatives' must be a list of 3",
        ),
        (
            [{**LISTWISE[0], "negatives": ["n1", "", "n3"]}],
            1,
            r"l.jsonl:1: field 'negatives\[1\]' must be a non-empty",
        ),
        ([{**LISTWISE[0], "teacher_positive": "NaN"}], 1, r"l.jsonl:1: field 'teacher_positive' must be a finite"),
        ([{"query": "q", "positive": "p", "negative": "n"}], 2, r"l.jsonl:1: --hard-negatives 2 needs listwise rows"),
    ],
)
def test_bad_listwise_rows_name_file_line_and_field(tmp_path, rows, min_negatives, message):
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    with pytest.raises(DataError, match=message):
        load_train_dataset(str(path), min_negatives=min_negatives)
