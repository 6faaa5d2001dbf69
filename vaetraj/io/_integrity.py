"""Count the whole frames of DCD and XTC files from their bytes.

mdtraj reads a DCD that ends inside a frame short without a word, and trusts a DCD
header's frame count. These scans tell how many whole frames a file really holds so the
reader can refuse a truncated file or read exactly the frames that are there. They also
read the time between frames, which mdtraj does not give for a DCD (its `time` counts
frames).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FrameCount:
    """atoms: per frame; whole: whole frames in the file; partial: it ends inside a
    frame; header_frames: the count a header claims (DCD), None where there is none;
    frame_time_ps: the time between frames, None where the file does not tell."""

    atoms: int
    whole: int
    partial: bool
    header_frames: int | None = None
    frame_time_ps: float | None = None


_AKMA_PS = 0.04888821  # CHARMM's AKMA time unit in ps: a DCD's time step is in it


def _positive(value: float) -> float | None:
    return float(value) if math.isfinite(value) and value > 0 else None


def _dcd_frame_time(head: bytes, endian: str, charmm: bool) -> float | None:
    """ps between frames from a DCD header: frames every NSAVC steps of DELTA AKMA
    units (CHARMM, NAMD and OpenMM write both; X-PLOR files keep DELTA as a double).
    None for mdtraj's placeholder (NSAVC 1, DELTA 1.0: mdtraj writes no time)."""
    (steps,) = struct.unpack(endian + "i", head[16:20])
    delta = struct.unpack(endian + ("f" if charmm else "d"), head[44 : 48 if charmm else 52])[0]
    if steps == 1 and delta == 1.0:
        return None
    return _positive(steps * delta * _AKMA_PS)


def stamp_dcd_frame_time(path: Path, frame_time_ps: float) -> None:
    """Write the time between frames into the header of a DCD that mdtraj wrote (its
    placeholder NSAVC 1, DELTA 1.0): NSAVC 1 and DELTA the frame time in AKMA units, as
    `_dcd_frame_time` reads it back (mdtraj itself keeps no time in a DCD)."""
    with open(path, "r+b") as handle:
        head = handle.read(92)
        endian = "<" if struct.unpack("<i", head[:4])[0] == 84 else ">"
        if head[4:8] != b"CORD" or struct.unpack(endian + "i", head[84:88])[0] == 0:
            raise ValueError(f"{path}: not a CHARMM-format DCD")
        handle.seek(44)
        handle.write(struct.pack(endian + "f", frame_time_ps / _AKMA_PS))


def scan_dcd(path: Path) -> FrameCount | None:
    """Frame count of a CHARMM/NAMD DCD with 32-bit record markers; None where the layout
    is one we do not check (64-bit markers, fixed atoms)."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(92)
        if len(head) < 92:
            return FrameCount(atoms=0, whole=0, partial=size > 0)
        for endian in "<>":
            if struct.unpack(endian + "i", head[:4])[0] == 84 and head[4:8] == b"CORD":
                break
        else:
            return None
        control = struct.unpack(endian + "20i", head[8:88])
        header_frames, fixed_atoms, charmm = control[0], control[8], control[19]
        has_cell = bool(charmm and control[10])
        has_4d = bool(charmm and control[11])
        if fixed_atoms:
            return None
        (title_bytes,) = struct.unpack(endian + "i", handle.read(4))
        handle.seek(title_bytes + 4, os.SEEK_CUR)
        record = handle.read(12)
        if len(record) < 12:
            return FrameCount(atoms=0, whole=0, partial=True, header_frames=header_frames)
        _, atoms, _ = struct.unpack(endian + "3i", record)
        header_bytes = handle.tell()
    frame_bytes = (56 if has_cell else 0) + (4 if has_4d else 3) * (4 * atoms + 8)
    body = size - header_bytes
    return FrameCount(
        atoms=atoms,
        whole=body // frame_bytes,
        partial=body % frame_bytes != 0,
        header_frames=header_frames,
        frame_time_ps=_dcd_frame_time(head, endian, bool(charmm)),
    )


_XTC_MAGIC = 1995


def scan_xtc(path: Path) -> FrameCount | None:
    """Frame count of an XTC file by walking its frame headers (seeks only); None for a
    layout we do not check (the 64-bit-size frames of GROMACS 2023+)."""
    size = os.path.getsize(path)
    whole = atoms = 0
    position = 0
    times: list[float] = []  # of the first two frames

    def counted(partial: bool) -> FrameCount:
        step = _positive(times[1] - times[0]) if len(times) == 2 else None
        return FrameCount(atoms=atoms, whole=whole, partial=partial, frame_time_ps=step)

    with open(path, "rb") as handle:
        while position < size:
            head = handle.read(56)
            if len(head) < 56:
                return counted(True)
            magic, natoms, _, time = struct.unpack(">3if", head[:16])
            if magic != _XTC_MAGIC:
                return None if whole == 0 else counted(True)
            atoms = natoms
            if len(times) < 2:
                times.append(time)
            if natoms <= 9:
                frame_bytes = 56 + 12 * natoms
            else:
                compressed = handle.read(36)
                if len(compressed) < 36:
                    return counted(True)
                (byte_count,) = struct.unpack(">i", compressed[32:36])
                frame_bytes = 56 + 36 + (byte_count + 3) // 4 * 4
            if position + frame_bytes > size:
                return counted(True)
            position += frame_bytes
            whole += 1
            handle.seek(position)
    return counted(False)
