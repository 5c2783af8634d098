"""Reading safetensors files one tensor at a time, each straight into the dtype and device it is used in.

``safetensors.torch.load_file`` returns every tensor at the file's dtype: loading an fp32 file into a bf16 model
through it holds the whole fp32 copy and then the bf16 one (1.5x the file). Here each tensor is allocated once, in
its final dtype and on its device, and filled with plain file reads (no memory map, so no file pages stay resident
and count against the process): straight into its memory when nothing is converted, else through one staging
buffer of at most 64 MiB. The peak is the kept tensors plus that buffer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024
STAGING_BYTES = 64 * 1024 * 1024

DtypeFor = Callable[[str, torch.dtype], torch.dtype]


def read_header(path: str | Path) -> tuple[dict, int]:
    """The safetensors header of ``path`` (``{key: {dtype, shape, data_offsets}}``, metadata dropped) and the
    byte offset where the data starts. A file that is not safetensors is a ``ValueError`` naming it."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < size <= MAX_HEADER_BYTES:
            raise ValueError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a safetensors file (unreadable header: {err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (the header is not a mapping)")
    header.pop("__metadata__", None)
    return header, 8 + size


def cast_floating(dtype: torch.dtype | None) -> DtypeFor:
    """The usual rule: floating tensors become ``dtype`` (None: keep the file's); others keep theirs."""
    return lambda key, stored: dtype if dtype is not None and stored.is_floating_point else stored


def iter_safetensors(path: str | Path, dtype_for: DtypeFor | None = None, device: str | torch.device | None = None,
                     on_read: Callable[[str, torch.Tensor], None] | None = None
                     ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(key, tensor)`` from a safetensors file in file order, each tensor read into its own buffer, cast
    to ``dtype_for(key, stored_dtype)`` and moved to ``device``; ``on_read(key, tensor)`` sees each tensor as
    stored, before the cast. Damaged files raise ``ValueError`` naming them."""
    path = Path(path)
    header, data_start = read_header(path)
    file_size = path.stat().st_size
    entries = sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0])
    staging = None  # one buffer for every cast: freeing and re-allocating one per tensor fragments the heap
    with open(path, "rb", buffering=0) as f:
        for key, info in entries:
            try:
                stored = SAFETENSORS_DTYPES[info["dtype"]]
                shape = tuple(int(n) for n in info["shape"])
                begin, end = (int(n) for n in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}: bad header entry for {key!r} ({err!r})") from None
            numel = 1
            for n in shape:
                numel *= n
            nbytes = numel * stored.itemsize
            if end - begin != nbytes or data_start + end > file_size:
                raise ValueError(f"{path}: tensor {key!r} {shape} {info['dtype']} does not fit its byte range "
                                 f"[{begin}, {end}) (file truncated or damaged)")
            target = dtype_for(key, stored) if dtype_for is not None else stored
            f.seek(data_start + begin)
            if on_read is not None and target != stored:  # the hook sees the stored tensor whole
                tensor = _read_bytes(f, nbytes, path, key).view(stored).reshape(shape)
                on_read(key, tensor)
                tensor = tensor.to(device=device, dtype=target)
            else:
                out = torch.empty(shape, dtype=target, device=device)
                if staging is None and (target != stored or out.device.type != "cpu"):
                    largest = max(_nbytes(info) for info in header.values())
                    staging = torch.empty(min(STAGING_BYTES, largest), dtype=torch.uint8)
                tensor = _read_into(f, out, stored, path, key, staging)
            yield key, tensor


def _read_bytes(f, nbytes: int, path: Path, key: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """``nbytes`` from ``f``'s position into ``out`` (a uint8 tensor, allocated when None)."""
    raw = torch.empty(nbytes, dtype=torch.uint8) if out is None else out[:nbytes]
    view, done = memoryview(raw.numpy()), 0
    while done < nbytes:
        got = f.readinto(view[done:])
        if not got:
            raise ValueError(f"{path}: unexpected end of file in tensor {key!r}")
        done += got
    return raw


def _nbytes(info: dict) -> int:
    begin, end = (int(n) for n in info.get("data_offsets", (0, 0)))
    return max(end - begin, 1)


def _read_into(f, out: torch.Tensor, stored: torch.dtype, path: Path, key: str,
               staging: torch.Tensor | None = None) -> torch.Tensor:
    """Fill ``out`` from ``f``'s position, where its values are stored as ``stored``: straight into its memory
    when nothing is converted, else through one staging buffer of at most ``STAGING_BYTES`` (so casting never
    holds a second whole copy of a tensor)."""
    if out.numel() == 0:
        return out
    if out.dtype == stored and out.device.type == "cpu" and out.is_contiguous():
        _read_bytes(f, out.numel() * stored.itemsize, path, key, out.view(-1).view(torch.uint8))
        return out
    if staging is None:
        staging = torch.empty(min(out.numel() * stored.itemsize, STAGING_BYTES), dtype=torch.uint8)
    flat, step = out.view(-1), max(1, staging.numel() // stored.itemsize)
    for start in range(0, flat.numel(), step):
        count = min(step, flat.numel() - start)
        chunk = _read_bytes(f, count * stored.itemsize, path, key, staging).view(stored)
        flat[start:start + count].copy_(chunk)
    return out


def load_safetensors(path: str | Path, dtype_for: DtypeFor | None = None, device: str | torch.device | None = None,
                     on_read: Callable[[str, torch.Tensor], None] | None = None) -> dict[str, torch.Tensor]:
    """``{key: tensor}`` of ``iter_safetensors`` (peak: the result plus the largest tensor at the file's dtype)."""
    return dict(iter_safetensors(path, dtype_for, device, on_read))
