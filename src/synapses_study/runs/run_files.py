"""The files of a run folder: how each is written, verified and read back.

Every write goes to a temporary name and is renamed into place, so an interrupted write
leaves the previous version or the new one, never a mixture. Binary files that are
committed are kept small: connection indices in the smallest integer type that holds
them, per-epoch pixel counts as int8 steps between epochs, all exact; the one rounding is
the per-pixel |weight| sums of ``pruning.npz``, kept as float16 (see :func:`write_pruning`).

``checkpoint.pt`` and ``model.pt`` are *sealed*: a first line names the format, a JSON
header holds the SHA-256 and size of the compressed payload, its compression and the run
it belongs to, then the payload follows.

Files rewritten every epoch (checkpoints, the history of a run in progress) are compressed
with zlib, which is fast, or not at all (``metrics.csv``); the files of a finished run,
written once and committed, with xz/LZMA, which is slow but makes them about 10% smaller
(a finished run's ``.npz`` files are zip archives with LZMA members, which ``np.load`` reads
like any other; its metrics are ``metrics.csv.xz``, which ``pandas.read_csv`` reads as it
is, at a quarter of the plain text's size). A file that fails any check raises :class:`DamagedFileError`
naming the file and the way out; nothing damaged is ever resumed or counted as finished.
A ``.pt`` file without the seal (a plain ``torch.save`` file) is refused: nothing says which
run it belongs to or whether it is whole.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

SEAL = b"synapses-sealed/1\n"


class DamagedFileError(RuntimeError):
    """A run file is truncated, corrupt or belongs to another run."""


class RunInProgressError(RuntimeError):
    """Another process holds the run's lock."""


@contextlib.contextmanager
def hold_lock(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (created if needed) for as long as the block runs.

    Raises:
        RunInProgressError: another process holds it (training the run), unless ``wait``:
            then block until it lets go.
    """
    lock = run_dir / ".lock"
    try:
        # O_NOFOLLOW: a .lock planted as a symbolic link must not get the file it points at
        # created or locked in its place (the lock is never truncated either: no O_TRUNC)
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{lock} is a symbolic link, not a lock file; delete it") from None
        raise
    with os.fdopen(fd, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunInProgressError(f"{run_dir} is being trained by another process") from None
        yield


# ---------------------------------------------------------------------------- writing
def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, renamed once complete.

    Raises:
        OSError: "no space left on the device writing <path>" when the disk is full; the
            temporary file is removed and ``path`` keeps its previous content.
    """
    tmp = path.with_name(path.name + ".tmp")
    # A temporary file left by a killed write, or planted as a symbolic link, is removed
    # (unlink removes a link, never its target) and the new one is created exclusively
    # without following links: a link at the temporary name never gets another file written.
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device writing {path}") from None
        raise


def to_bytes(write: Callable[[io.BytesIO], Any]) -> bytes:
    """The bytes that ``write(buffer)`` produces (np.savez, torch.save, ...)."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256": ..., "size": ...}`` of a file's bytes (what a run's manifest lists)."""
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


# ---------------------------------------------------------------------------- sealed .pt files
def write_sealed(path: Path, obj: Any, compression: str = "zlib", **meta: Any) -> None:
    """``torch.save(obj)``, compressed (``"zlib"`` or ``"xz"``), with a checksum and ``meta``
    (JSON values) in a header."""
    raw = to_bytes(lambda f: torch.save(obj, f))
    if compression == "xz":
        payload = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
        meta = {**meta, "compression": "xz"}  # absent means zlib (files written before xz)
    elif compression == "zlib":
        payload = zlib.compress(raw, 6)
    else:
        raise ValueError(f"compression must be 'zlib' or 'xz', got {compression!r}")
    header = {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload), **meta}
    write_atomic(path, SEAL + json.dumps(header, sort_keys=True).encode() + b"\n" + payload)


def _decompress(header: dict[str, Any], payload: bytes) -> bytes:
    return lzma.decompress(payload) if header.get("compression") == "xz" else zlib.decompress(payload)


def read_sealed(path: Path, way_out: str) -> tuple[dict[str, Any], Any]:
    """``(header, obj)`` of a file written by :func:`write_sealed`.

    Raises:
        DamagedFileError: ``"<path> is damaged (<why>); <way_out>"``.
    """
    header, payload = _checked_payload(path, way_out)
    try:
        return header, torch.load(io.BytesIO(_decompress(header, payload)), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad zip
        raise DamagedFileError(
            f"{path} is damaged (not a readable checkpoint: {type(err).__name__}); {way_out}"
        ) from None


def _checked_payload(path: Path, way_out: str) -> tuple[dict[str, Any], bytes]:
    """``(header, payload)`` of a sealed file whose size and checksum match."""

    def damaged(why: str) -> DamagedFileError:
        return DamagedFileError(f"{path} is damaged ({why}); {way_out}")

    raw = path.read_bytes()
    if not raw:
        raise damaged("it is empty")
    if not raw.startswith(SEAL):
        raise damaged("no checksum: not a sealed file, from an old version or another program")
    header_line, _, payload = raw[len(SEAL) :].partition(b"\n")
    try:
        header = json.loads(header_line)
    except json.JSONDecodeError:
        raise damaged("its header is not JSON") from None
    if len(payload) != header.get("size"):
        raise damaged(f"{len(payload)} bytes of payload, {header.get('size')} expected: truncated")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise damaged("checksum mismatch")
    return header, payload


# ---------------------------------------------------------------------------- text files
def write_xz_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) as an xz file, atomically (a finished run's ``metrics.csv.xz``)."""
    write_atomic(path, lzma.compress(text.encode(), preset=9 | lzma.PRESET_EXTREME))


def read_text(path: Path) -> str:
    """A text file's content, decompressed when its name ends in ``.xz``.

    Raises:
        DamagedFileError: an ``.xz`` file that does not decompress (truncated or corrupt).
    """
    if path.suffix != ".xz":
        return path.read_text()
    try:
        return lzma.decompress(path.read_bytes()).decode()
    except (lzma.LZMAError, EOFError, UnicodeDecodeError) as err:
        raise DamagedFileError(
            f"{path} is damaged ({type(err).__name__}: {err}); delete {path.parent} to rerun that run"
        ) from None


def compact_indices(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with int64 tensors stored in the smallest integer type that holds them."""
    return {k: (_smallest_int(v) if v.dtype == torch.int64 else v) for k, v in state.items()}


def _smallest_int(values: torch.Tensor) -> torch.Tensor:
    if values.numel() == 0:
        return values.to(torch.int16)
    low, high = int(values.min()), int(values.max())
    for dtype in (torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.to(dtype)
    return values


def widen_indices(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo :func:`compact_indices`: integer tensors back to int64."""
    return {k: (v.to(torch.int64) if v.dtype in (torch.int16, torch.int32) else v) for k, v in state.items()}


def save_model(path: Path, state: dict[str, torch.Tensor], run_id: str) -> None:
    """A final network's state dict, sealed (xz: written once, committed)."""
    write_sealed(path, compact_indices(state), compression="xz", kind="model", run_id=run_id)


def load_model_state(path: Path, run_id: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict written by :func:`save_model`, indices int64, ready for ``load_state_dict``.

    Raises:
        DamagedFileError: damaged, or (given ``run_id``) sealed for another run.
    """
    way_out = f"delete {path.parent} to rerun that run from scratch"
    header, state = read_sealed(path, way_out)
    if run_id is not None and header.get("run_id") != run_id:
        raise DamagedFileError(f"{path} belongs to run {header.get('run_id')!r}, not {run_id!r}; {way_out}")
    return widen_indices(state)


def save_checkpoint(path: Path, payload: dict[str, Any], run_id: str, epoch: int) -> None:
    """A resumable state (``payload["model"]`` a state dict), sealed with its run and epoch."""
    payload = {**payload, "model": compact_indices(payload["model"])}
    write_sealed(path, payload, kind="checkpoint", run_id=run_id, epoch=epoch)


def load_checkpoint(path: Path, run_id: str) -> dict[str, Any]:
    """The payload of :func:`save_checkpoint`, verified to be ``run_id``'s.

    Raises:
        DamagedFileError: truncated, corrupt, or written by another run.
    """
    way_out = f"delete {path.parent} to restart the run from scratch"
    header, payload = read_sealed(path, way_out)
    if header.get("run_id") != run_id:
        raise DamagedFileError(f"{path} belongs to run {header.get('run_id')!r}, not {run_id!r}; {way_out}")
    if header.get("epoch") != payload.get("epoch"):
        raise DamagedFileError(
            f"{path} is damaged (header epoch {header.get('epoch')}, payload epoch {payload.get('epoch')}); {way_out}"
        )
    return {**payload, "model": widen_indices(payload["model"])}


def is_intact(path: Path) -> bool:
    """Whether a sealed file passes its size and checksum checks, without unpickling it."""
    try:
        _checked_payload(path, "")
    except (DamagedFileError, OSError):
        return False
    return True


# ---------------------------------------------------------------------------- arrays
def npz_bytes(arrays: dict[str, np.ndarray], final: bool) -> bytes:
    """An ``.npz`` of ``arrays``: zip-deflated while a run is in progress (``np.savez_compressed``),
    with LZMA members once it is ``final`` (``np.load`` reads both)."""
    if not final:
        named: dict[str, Any] = dict(arrays)  # (numpy's stub would match a key to allow_pickle)
        return to_bytes(lambda f: np.savez_compressed(f, **named))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, values in arrays.items():
            # a fixed timestamp: the same arrays always give the same bytes (no spurious diffs)
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_LZMA
            array = np.asanyarray(values)
            archive.writestr(member, to_bytes(partial(np.lib.format.write_array, array=array, allow_pickle=False)))
    return buffer.getvalue()


def write_topology(path: Path, counts: np.ndarray, final: bool = False) -> None:
    """``counts`` ``(epochs + 1, n_inputs)`` as steps between epochs (int8 where they fit)."""
    steps = np.diff(counts.astype(np.int64), axis=0, prepend=0)
    write_atomic(path, npz_bytes({"pixel_count_steps": _smallest_array(steps)}, final))


def read_topology(path: Path) -> np.ndarray:
    """``(epochs + 1, n_inputs)`` int64 counts from :func:`write_topology`."""
    arrays = read_npz(path)
    if "pixel_count_steps" not in arrays:
        raise DamagedFileError(f"{path} holds no pixel_count_steps; delete {path.parent} to rerun that run")
    return np.cumsum(arrays["pixel_count_steps"].astype(np.int64), axis=0)


def write_pruning(path: Path, pruned: np.ndarray, weight_mass: np.ndarray | None, final: bool = False) -> None:
    """``pruned`` counts and ``weight_mass`` (|weight| sums, or ``None`` when not recorded),
    each ``(epochs, n_inputs)``.

    The sums are kept as float16 (:func:`stored_weight_mass`: 11 significant bits, a
    relative error of at most 2**-11 = 0.05%, far below the three decimals any table quotes) when
    every sum is zero or in float16's normal range, else as float32. Either is stored as its
    byte planes, pixel by pixel: a pixel's sums change slowly over the epochs, so each plane
    compresses far better than the floats. Counts are exact."""
    arrays = {"pruned_counts": _smallest_array(pruned)}
    if weight_mass is not None:
        key = _weight_mass_key(weight_mass)
        arrays[key] = _byte_planes(weight_mass, WEIGHT_MASS_PLANES[key])
    write_atomic(path, npz_bytes(arrays, final))


def write_gradients(path: Path, squared: np.ndarray, final: bool = False) -> None:
    """``squared`` ``(epochs, n_inputs)`` float32: each epoch's summed squared gradients per pixel."""
    write_atomic(path, npz_bytes({"squared_gradient": squared.astype(np.float32)}, final))


def read_gradients(path: Path) -> np.ndarray:
    """``(epochs, n_inputs)`` float32 from :func:`write_gradients`, checked to be finite."""
    arrays = read_npz(path)
    squared = arrays.get("squared_gradient")
    if squared is None or squared.ndim != 2 or squared.dtype != np.float32 or not np.isfinite(squared).all():
        raise DamagedFileError(
            f"{path} holds no finite (epochs, pixels) squared_gradient; delete {path.parent} to rerun that run"
        )
    return squared


def read_pruning(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(pruned_counts int64, abs_weight_sum float64 or None)`` from :func:`write_pruning`."""
    arrays = read_npz(path)
    if "pruned_counts" not in arrays:
        raise DamagedFileError(f"{path} holds no pruned_counts; delete {path.parent} to rerun that run")
    mass = next(
        (_from_byte_planes(arrays[key], dtype) for key, dtype in WEIGHT_MASS_PLANES.items() if key in arrays), None
    )
    return arrays["pruned_counts"].astype(np.int64), mass


# The byte-plane layouts of pruning.npz's weight sums: array name -> stored dtype.
WEIGHT_MASS_PLANES = {"abs_weight_sum_f16_planes": ">f2", "abs_weight_sum_planes": ">f4"}


def stored_weight_mass(weight_mass: np.ndarray) -> np.ndarray:
    """The float64 values :func:`read_pruning` gives back for ``weight_mass`` once written."""
    dtype = WEIGHT_MASS_PLANES[_weight_mass_key(weight_mass)]
    return np.asarray(weight_mass).astype(dtype).astype(np.float64)


def _weight_mass_key(weight_mass: np.ndarray) -> str:
    """The layout :func:`write_pruning` gives ``weight_mass``: float16 where it fits."""
    return "abs_weight_sum_f16_planes" if _fits_float16(weight_mass) else "abs_weight_sum_planes"


def _fits_float16(values: np.ndarray) -> bool:
    """Whether every value is zero or within float16's normal range (where it keeps all
    11 significant bits): per-pixel |weight| sums of the study's nets are about 0.01 to 10."""
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    info = np.finfo(np.float16)
    inside = (magnitude == 0) | ((magnitude >= info.smallest_normal) & (magnitude <= info.max))
    return bool(inside.all())


def _byte_planes(values: np.ndarray, dtype: str) -> np.ndarray:
    """``(epochs, n)`` floats -> ``(itemsize, n, epochs)`` uint8 of their big-endian
    ``dtype`` (``">f2"`` or ``">f4"``) words, most significant byte first."""
    transposed = np.ascontiguousarray(np.asarray(values).T).astype(dtype)
    words = transposed.view(np.uint8).reshape(*transposed.shape, np.dtype(dtype).itemsize)
    return np.ascontiguousarray(np.moveaxis(words, -1, 0))


def _from_byte_planes(planes: np.ndarray, dtype: str) -> np.ndarray:
    """Inverse of :func:`_byte_planes`, as ``(epochs, n)`` float64."""
    words = np.ascontiguousarray(np.moveaxis(planes, 0, -1)).view(dtype)[..., 0]
    return np.ascontiguousarray(words.T).astype(np.float64)


def _smallest_array(values: np.ndarray) -> np.ndarray:
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if values.size == 0 or (info.min <= values.min() and values.max() <= info.max):
            return values.astype(dtype)
    return values.astype(np.int64)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, read now, so that a damaged file fails here, naming itself."""
    try:
        with np.load(path) as z:
            return {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error, lzma.LZMAError) as err:
        raise DamagedFileError(
            f"{path} is damaged ({type(err).__name__}: {err}); delete {path.parent} to rerun that run"
        ) from None
