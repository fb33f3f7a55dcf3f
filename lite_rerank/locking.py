"""One process at a time in a folder that a command writes (a training run, a document cache, teacher-score parts).

Two commands writing one folder at once interleave their files and both report success; the second of them now stops
at once, naming the process that holds the folder. The lock is `fcntl.flock` on FOLDER/.lock: the operating system
releases it when its process ends, however it ends, so a crash never leaves a stale lock behind. The file itself
stays (it records the last holder); deleting it would race with the next command.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; folders are not guarded there
    fcntl = None

LOCK_FILE = ".lock"


class FolderInUse(RuntimeError):
    """Another process holds the folder; the message names it and says what to do."""


class FolderLock:
    """Held from `acquire()` (or `with`) until `release()`, the end of the block or the end of the process."""

    def __init__(self, folder, what: str):
        self.folder, self.what, self._handle = Path(folder), what, None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "{}"
                handle.close()
                raise FolderInUse(self._busy_message(holder)) from None
        handle.seek(0)
        handle.truncate()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def _busy_message(self, holder: str) -> str:
        try:
            info = json.loads(holder)
            who = f"process {info['pid']} on {info['host']}, since {info['since']}: {info['command'][:200]}"
        except (json.JSONDecodeError, KeyError, TypeError):
            who = "another process"
        return (
            f"{self.folder} is in use by another {self.what} ({who}); wait for it to finish, or stop it, or use "
            "another folder. Nothing was changed."
        )

    def release(self):
        if self._handle is not None:
            if fcntl is not None:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
