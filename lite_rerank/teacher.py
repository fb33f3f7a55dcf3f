"""The cross-encoder teacher of Margin-MSE / KL distillation, and a disk cache of its scores."""

import json
from pathlib import Path

import torch

from .cross_encoder import CrossEncoderScorer, cross_encoder_logits
from .hardware import choose_dtype
from .utils import file_sha256

# What a training summary names as the teacher when the training rows carry its scores (scripts/teacher_scores.py).
TEACHER_SCORES_IN_DATA = "the teacher scores carried by the training data"


class CrossEncoderTeacher:
    """A sequence-classification cross-encoder (default `cross-encoder/ms-marco-MiniLM-L-6-v2`, or one trained by
    `train_accelerate.py --scorer cross-encoder`) scoring tokenised pairs under `no_grad`, in the
    precision `lite_rerank.hardware` picks for the device (float16 on GPU, bfloat16 only on a CPU that runs it natively)."""

    def __init__(self, name_or_path: str, device):
        scorer = CrossEncoderScorer.from_pretrained(name_or_path, device, choose_dtype("auto", device))
        self.model, self.tokenizer, self.max_length = scorer.model, scorer.tokenizer, scorer.max_length
        self.weights_id = weights_file_sha256(name_or_path)

    @torch.no_grad()
    def score(self, pair_inputs: dict) -> torch.Tensor:
        """Tokenised (query, doc) pairs → float32 scores (n_pairs,)."""
        pair_inputs = {key: value.to(self.model.device) for key, value in pair_inputs.items()}
        return cross_encoder_logits(self.model, pair_inputs).float()


def weights_file_sha256(name_or_path: str) -> str | None:
    """The sha256 of a model's weights file (a local folder's, or the Hub cache's), which says which weights a
    teacher had when a score was cached; None where no file is found."""
    from transformers.utils.hub import cached_file

    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            path = cached_file(
                name_or_path,
                name,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):
            path = None
        if path:
            return file_sha256(path)
    return None


class TeacherScoreCache:
    """Teacher scores by training-row index, appended to one JSONL file per process, so a resumed run or a second
    epoch does not recompute them. `meta.json` records what the scores belong to; a mismatch is an error."""

    def __init__(self, folder, meta: dict, process_index: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            stored = json.loads(meta_path.read_text())
            if stored != meta:
                changed = sorted(key for key in stored.keys() | meta.keys() if stored.get(key) != meta.get(key))
                raise ValueError(
                    f"{meta_path}: the teacher cache was built for other scores ({', '.join(changed)} changed: "
                    f"{', '.join(f'{k} {stored.get(k)!r} → {meta.get(k)!r}' for k in changed)}); its scores are not "
                    "this teacher's: use another --teacher-cache folder"
                )
        elif process_index == 0:
            meta_path.write_text(json.dumps(meta, indent=2))
        self.scores: dict[int, list[float]] = {}
        for part in sorted(self.folder.glob("scores.rank*.jsonl")):
            for line in part.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: those scores are simply recomputed
                self.scores[record["row"]] = record["scores"]
        self._out = (self.folder / f"scores.rank{process_index}.jsonl").open("a")

    def lookup(self, rows: list[int]) -> torch.Tensor | None:
        """Cached (n, 2) scores when every row is cached, else None."""
        if all(row in self.scores for row in rows):
            return torch.tensor([self.scores[row] for row in rows])
        return None

    def add(self, rows: list[int], scores: torch.Tensor):
        for row, values in zip(rows, scores.tolist()):
            self.scores[row] = values
            self._out.write(json.dumps({"row": row, "scores": values}) + "\n")
        self._out.flush()
