from __future__ import annotations

import hashlib
import os


def compute_sha256(path: str | os.PathLike, *, block_size: int = 1 << 20) -> str:
    """SHA-256 of a file, read in blocks so memory stays bounded."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()
