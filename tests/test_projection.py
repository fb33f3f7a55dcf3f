"""lite_rerank/projection.py: Small-LITE's projection started from the encoder's principal directions, checked against
numpy's SVD of token vectors gathered one passage at a time, and against a random start on what it is for."""

import numpy as np
import pytest
import torch
from conftest import tiny_model

from lite_rerank.projection import init_projection_from_passages, principal_directions

PASSAGES = [
    "grep searches files for lines that match a pattern",
    "an image editor with layers and plugins",
    "tools to manage the ext2, ext3 and ext4 file systems",
    "a fast, scalable, distributed revision control system written in C",
    "Python bindings for the GTK graphical toolkit",
    "a text editor",
]


def token_vectors_one_by_one(model, tokenizer) -> np.ndarray:
    """Every real token's encoder vector, each passage encoded alone (no padding anywhere)."""
    rows = []
    with torch.no_grad():
        for text in PASSAGES:
            ids = tokenizer(text, max_length=model.config.doc_max_length, truncation=True, return_tensors="pt")
            rows.append(model.encoder(**ids)[0][0].double().numpy())
    return np.concatenate(rows)


def test_the_projection_is_the_top_right_singular_vectors_of_the_token_vectors(tokenizer):
    model = tiny_model(projection_dim=6).train()
    used = init_projection_from_passages(model, tokenizer, PASSAGES, batch_size=4)  # padded batches
    assert model.training  # left as it was found
    vectors = token_vectors_one_by_one(model.eval(), tokenizer)
    assert used == len(vectors)
    _, _, right = np.linalg.svd(vectors, full_matrices=False)
    weight = model.projection.weight.detach().double().numpy()
    agreement = np.abs((weight @ right[:6].T).diagonal())  # the same directions, up to sign
    assert agreement == pytest.approx(np.ones(6), abs=1e-4)
    assert torch.count_nonzero(model.projection.bias) == 0


def test_it_keeps_the_token_inner_products_better_than_a_random_projection(tokenizer):
    model = tiny_model(projection_dim=6)
    vectors = torch.from_numpy(token_vectors_one_by_one(model, tokenizer)).float()
    gram = vectors @ vectors.T
    random_weight = model.projection.weight.detach().clone()
    init_projection_from_passages(model, tokenizer, PASSAGES)

    def error(weight):
        projected = vectors @ weight.T
        return float((projected @ projected.T - gram).norm())

    assert error(model.projection.weight.detach()) < 0.5 * error(random_weight)


def test_too_few_vectors_and_no_projection_are_refused(tokenizer):
    with pytest.raises(ValueError, match="at least 8 token vectors"):
        principal_directions(torch.randn(5, 32), 8)
    with pytest.raises(ValueError, match="no projection"):
        init_projection_from_passages(tiny_model(), tokenizer, PASSAGES)
