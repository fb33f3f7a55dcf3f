"""Small-LITE's projection started from the encoder's principal directions instead of at random (issue 23, item 6).

A fresh random d → d' projection scrambles the similarity matrix S that the scorer learns from; the top d' right
singular vectors of the encoder's token vectors keep the token-to-token inner products as well as any rank-d' map
can (Eckart–Young), so training starts from an S close to the full-width one.
"""

import torch

from .utils import nested_sample

PCA_ROWS = 512  # training rows whose positives give the principal directions their token vectors (≈ 50 k of them)


@torch.no_grad()
def principal_directions(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    """(dim, hidden): the top `dim` right singular vectors of `vectors` (tokens, hidden), uncentered — inner products,
    not variance about the mean, are what S is made of — each signed so that its largest entry is positive
    (the SVD's signs are arbitrary; this makes the result reproducible).

    >>> basis = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> vectors = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-2.0, 0.0]]) @ basis
    >>> principal_directions(vectors, 1)
    tensor([[1., 0., 0.]])
    """
    if vectors.dim() != 2 or vectors.shape[0] < dim or vectors.shape[1] < dim:
        raise ValueError(f"need at least {dim} token vectors of width ≥ {dim}, got {tuple(vectors.shape)}")
    _, _, right = torch.linalg.svd(vectors.double(), full_matrices=False)
    top = right[:dim]  # (dim, hidden)
    signs = torch.sign(top.gather(1, top.abs().argmax(dim=1, keepdim=True)))
    return (top * signs).float()


@torch.no_grad()
def init_projection_from_passages(model, tokenizer, passages: list[str], batch_size: int = 32) -> int:
    """Set `model.projection` (Small-LITE: hidden → projection_dim) to the principal directions of the encoder's
    token vectors over `passages` (real tokens only, as the document side encodes them), bias zero. Returns the
    number of token vectors used."""
    if model.projection is None:
        raise ValueError("the model has no projection (projection_dim is not set)")
    dim = model.config.projection_dim
    was_training = model.training
    model.eval()
    vectors = []
    for start in range(0, len(passages), batch_size):
        batch = tokenizer(
            passages[start : start + batch_size],
            max_length=model.config.doc_max_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        )
        batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
        hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        vectors.append(hidden[batch["attention_mask"].bool()].float().cpu())  # (real tokens, hidden)
    weight = principal_directions(torch.cat(vectors), dim)
    model.projection.weight.copy_(weight.to(model.projection.weight))
    model.projection.bias.zero_()
    model.train(was_training)
    return sum(len(v) for v in vectors)


def init_projection_from_training_rows(model, tokenizer, rows, seed: int) -> str:
    """`init_projection_from_passages` over the positives of PCA_ROWS training rows drawn with `seed` (a
    datasets.Dataset of triplet / listwise rows: training passages only, never an evaluated one). Returns what it
    did, to print."""
    chosen = rows.select(sorted(nested_sample(len(rows), min(PCA_ROWS, len(rows)), seed)))
    tokens = init_projection_from_passages(model, tokenizer, list(chosen["positive"]))
    return f"projection: principal directions of {tokens} token vectors of {len(chosen)} training positives"
