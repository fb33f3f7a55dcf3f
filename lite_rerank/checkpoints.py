"""Checkpoint folders that are never left half-written, never confused with anything else, and hold no pickle of ours.

A checkpoint is `checkpoints/step-NNNNNNNN` (exactly eight digits), written under a temporary name and renamed when
complete. Last into it go `training_state.json` (where training stands: the project's own resume state, JSON) and
`checkpoint.json` (every file with its size and sha256). Only such folders are resumed from or pruned: a copy named
`step-00000002.bak`, a `step-backup` folder or a file added later is never loaded, and never deleted.

What accelerate writes (weights as safetensors; optimizer, scheduler, sampler and RNG states as torch pickles) is
loaded with `weights_only=True`, which runs no code; still, a run folder from someone else is an input to be trusted
like code.
"""

import json
import os
import re
import shutil
from pathlib import Path

from .utils import file_sha256, write_text_atomically

PREFIX = "step-"
NAME = re.compile(r"step-(\d{8})")
MANIFEST = "checkpoint.json"
STATE = "training_state.json"
FORMAT = "lite-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names it and what to do."""


def checkpoint_folders(folder) -> list[Path]:
    """The folders named like this run's checkpoints (`step-` and eight digits), oldest first."""
    folder = Path(folder)
    found = (
        [path for path in folder.iterdir() if NAME.fullmatch(path.name) and path.is_dir()] if folder.is_dir() else []
    )
    return sorted(found, key=lambda path: path.name)


def checkpoint_problem(path: Path) -> str | None:
    """None for a complete checkpoint written by this code, else what is wrong with it."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return f"no {MANIFEST}: not a complete checkpoint of this run (or one written by an older version)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        assert manifest["format"] == FORMAT and NAME.fullmatch(path.name)[1] == f"{manifest['step']:08d}"
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
        return f"{MANIFEST} does not read as this run's record of the checkpoint"
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    if present - set(files):
        return f"it holds files the run did not write: {sorted(present - set(files))[:3]}"
    for name, info in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != info["size"]:
            return f"{name} is {file.stat().st_size:,} bytes, {info['size']:,} were written"
        if file_sha256(file) != info["sha256"]:
            return f"{name} differs from what was written (sha256)"
    return None


def own_checkpoints(folder) -> list[Path]:
    """The checkpoint folders this run wrote (named as it names them, with its record), oldest first."""
    return [path for path in checkpoint_folders(folder) if (path / MANIFEST).is_file()]


def latest_checkpoint(folder, choose: str | None = None) -> Path | None:
    """The checkpoint to resume from: the newest (`choose`: a checkpoint's name, e.g. `step-00000400`). A damaged
    newest checkpoint is an error naming it and the newest intact one; resuming from that one is the user's choice."""
    found = checkpoint_folders(folder)
    if choose is not None:
        chosen = [path for path in found if path.name == choose]
        if not chosen:
            raise CheckpointError(
                f"--resume-from {choose}: no such checkpoint in {folder} ({[p.name for p in found]})"
            )
        found = chosen
    if not found:
        return None
    newest = found[-1]
    problem = checkpoint_problem(newest)
    if problem is None:
        return newest
    intact = next((path for path in reversed(found[:-1]) if checkpoint_problem(path) is None), None)
    advice = (
        f"the newest intact one is {intact.name}: rerun with --resume-from {intact.name} to continue from it"
        if intact is not None
        else "no intact checkpoint is left: start again with --overwrite-output-dir or another --output-dir"
    )
    raise CheckpointError(f"{newest} cannot be resumed from ({problem}); {advice} ({newest.name} is left as it is)")


def read_training_state(path: Path) -> dict:
    return json.loads((Path(path) / STATE).read_text())


def save_checkpoint(accelerator, folder, step: int, keep: int, state: dict) -> Path:
    """`accelerator.save_state` on every process into a temporary folder, then (main process) the training state and
    the record of every file, and the rename; then only the newest `keep` of this run's own checkpoints are kept."""
    folder = Path(folder)
    final = folder / f"{PREFIX}{step:08d}"
    partial = folder / f".partial-{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text_atomically(partial / STATE, json.dumps(state, indent=2) + "\n")
        files = sorted(p for p in partial.rglob("*") if p.is_file())
        record = {
            "format": FORMAT,
            "step": step,
            "files": {
                p.relative_to(partial).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files
            },
        }
        write_text_atomically(partial / MANIFEST, json.dumps(record, indent=2) + "\n")
        if (final / MANIFEST).is_file():  # this run's own checkpoint of the step, resumed from an earlier one
            shutil.rmtree(final)
        elif final.exists():  # not written by this run: moved aside, never deleted
            os.replace(final, final.with_name(f"{final.name}.kept"))
        os.replace(partial, final)
        for old in own_checkpoints(folder)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def recover_folder(final) -> None:
    """Finish a `replace_folder` cut short between its two renames: the previous version of `final` comes back."""
    final = Path(final)
    previous = final.with_name(f".previous-{final.name}")
    if not final.exists() and previous.is_dir():
        os.replace(previous, final)


def replace_folder(write, final) -> None:
    """Call `write(tmp_folder)`, then swap it in for `final`, so a crash never leaves `final` half-written (a kill
    between the two renames leaves `.previous-<name>`, which `recover_folder` puts back)."""
    final = Path(final)
    partial, previous = final.with_name(f".partial-{final.name}"), final.with_name(f".previous-{final.name}")
    recover_folder(final)
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    if final.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(partial, final)
    shutil.rmtree(previous, ignore_errors=True)
