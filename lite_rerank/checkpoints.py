"""Checkpoint folders that are never left half-written: write under a temporary name, then rename."""

import os
import shutil
from pathlib import Path

PREFIX = "step-"


def latest_checkpoint(folder) -> Path | None:
    """The newest complete checkpoint (`step-NNNNNNNN`); temporary folders of an interrupted save are ignored."""
    folder = Path(folder)
    complete = sorted(folder.glob(f"{PREFIX}*")) if folder.is_dir() else []
    return complete[-1] if complete else None


def save_checkpoint(accelerator, folder, step: int, keep: int) -> Path:
    """`accelerator.save_state` on every process into a temporary folder, renamed once all processes are done;
    then only the newest `keep` checkpoints are kept."""
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
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for old in sorted(folder.glob(f"{PREFIX}*"))[:-keep]:
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
