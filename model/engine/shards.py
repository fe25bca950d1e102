"""Soft-target shards: the on-disk format of ``logdistill label`` (the scale-out label Job).

Each distinct transfer template goes to shard ``sha256(template) mod N`` (stable across
processes and machines, unlike ``hash()``). A shard is two files:

* ``shard-<I>-of-<N>.npz``: ``keys`` (the templates, unicode), ``probs`` float32 ``[K, C]`` (soft
  targets at ``training.temperature``, columns in ``labels`` order), ``labels``, and ``meta`` (one
  JSON string: shard, shards, temperature, the transfer set's size and digest);
* ``shard-<I>-of-<N>.sha256``: ``sha256sum`` format, the digest of the ``.npz`` bytes.

Both are written to a temporary name and renamed, the checksum last, so a re-run index replaces
only its own two files and a reader never trusts a half-written shard. :func:`load_soft_targets`
refuses a missing, corrupt or mismatched shard and names it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

__all__ = ["ShardError", "shard_of", "shard_name", "transfer_digest", "write_shard", "load_soft_targets"]


class ShardError(Exception):
    """Soft-target shards that cannot be used; the message names the shard file."""


def shard_of(template: str, shards: int) -> int:
    """Stable shard of a template: ``int(sha256(utf-8 bytes)) mod shards``."""
    return int.from_bytes(hashlib.sha256(template.encode("utf-8")).digest()[:8], "big") % shards


def shard_name(index: int, shards: int) -> str:
    return f"shard-{index}-of-{shards}"


def transfer_digest(templates: Sequence[str]) -> str:
    """Digest of the distinct templates (order-free): shards and trainer must agree on it."""
    h = hashlib.sha256()
    for template in sorted(set(templates)):
        h.update(template.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_shard(out_dir: str | Path, index: int, shards: int, keys: Sequence[str], probs: Any,
                labels: Sequence[str], meta: dict[str, Any]) -> Path:
    """Write ``shard-<index>-of-<shards>.npz`` and its ``.sha256`` atomically; returns the ``.npz`` path."""
    import numpy as np

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array(list(keys), dtype=str), probs=np.asarray(probs, dtype=np.float32),
             labels=np.array(list(labels), dtype=str), meta=np.array(json.dumps(meta, sort_keys=True)))
    data = buffer.getvalue()
    name = shard_name(index, shards)
    npz = out / f"{name}.npz"
    _atomic_write(npz, data)
    _atomic_write(out / f"{name}.sha256", f"{hashlib.sha256(data).hexdigest()}  {npz.name}\n".encode())
    return npz


def _read_shard(directory: Path, index: int, shards: int) -> tuple[Any, Any, list[str], dict[str, Any]]:
    import numpy as np

    name = shard_name(index, shards)
    npz, checksum = directory / f"{name}.npz", directory / f"{name}.sha256"
    for path in (npz, checksum):
        if not path.is_file():
            raise ShardError(f"soft targets: shard {index} of {shards} is missing ({path} does not exist);"
                             f" re-run `logdistill label --shard-index {index} --shards {shards}`")
    data = npz.read_bytes()
    expected = checksum.read_text(encoding="utf-8").split()[:1]
    actual = hashlib.sha256(data).hexdigest()
    if expected != [actual]:
        raise ShardError(f"soft targets: shard {index} of {shards} is corrupt: {npz} has sha256 {actual},"
                         f" {checksum.name} says {expected[0] if expected else 'nothing'}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys, probs, labels = z["keys"], z["probs"], [str(x) for x in z["labels"]]
            meta = json.loads(str(z["meta"]))
    except (ValueError, KeyError, OSError) as err:
        raise ShardError(f"soft targets: shard {index} of {shards} is unreadable ({npz}): {err}") from None
    return keys, probs, labels, meta


def load_soft_targets(directory: str | Path, templates: Sequence[str], labels: Sequence[str],
                      temperature: float, expected: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """``[len(templates), C]`` soft targets for ``templates`` from every shard in ``directory``.

    Checks that all ``N`` shards are there with valid checksums, were made for the same ``N``,
    labels and temperature, and that together they hold exactly the transfer set ``expected``
    (default ``templates``): each distinct template once, in its own shard. Returns the tensor and
    the templates no shard has (rows left zero): only lines added beyond ``expected``, e.g. by
    ``--extra-data``; the caller labels them or refuses.
    """
    import numpy as np
    import torch

    expected = list(templates if expected is None else expected)
    folder = Path(directory)
    if not folder.is_dir():
        raise ShardError(f"soft targets: {folder} is not a directory (run `logdistill label` first)")
    found = sorted(folder.glob("shard-*-of-*.npz")) + sorted(folder.glob("shard-*-of-*.sha256"))
    if not found:
        raise ShardError(f"soft targets: no shard in {folder} (expected shard-<i>-of-<n>.npz and .sha256 files)")
    counts = {int(p.name.split("-of-")[1].split(".")[0]) for p in found}
    if len(counts) != 1:
        raise ShardError(f"soft targets: {folder} mixes shard counts {sorted(counts)}: remove the stale shards")
    shards = counts.pop()
    digest = transfer_digest(expected)
    table: dict[str, Any] = {}
    for index in range(shards):
        keys, probs, shard_labels, meta = _read_shard(folder, index, shards)
        where = f"soft targets: shard {index} of {shards} ({folder / shard_name(index, shards)}.npz)"
        if shard_labels != list(labels):
            raise ShardError(f"{where} has labels {shard_labels}, the teacher has {list(labels)}")
        if abs(float(meta.get("temperature", -1)) - temperature) > 1e-9:
            raise ShardError(f"{where} was made at temperature {meta.get('temperature')},"
                             f" training.temperature is {temperature}")
        if meta.get("shard") != index or meta.get("shards") != shards:
            raise ShardError(f"{where} says it is shard {meta.get('shard')} of {meta.get('shards')}")
        if meta.get("transferDigest") != digest:
            raise ShardError(f"{where} was made for other train lines (transfer set {meta.get('transferDigest')},"
                             f" now {digest}): re-run the labelling for the current data, split and seed")
        for key, row in zip(keys.tolist(), probs):
            if shard_of(key, shards) != index or key in table:
                raise ShardError(f"{where} holds {key!r}, which belongs to shard {shard_of(key, shards)}")
            table[key] = row
    absent = [t for t in dict.fromkeys(expected) if t not in table]
    if absent or len(table) != len(set(expected)):
        raise ShardError(f"soft targets: the shards in {folder} hold {len(table)} templates, the transfer set has"
                         f" {len(set(expected))} ({len(absent)} missing, e.g. {absent[:1]}): re-run the labelling")
    missing = [t for t in dict.fromkeys(templates) if t not in table]
    probs = np.zeros((len(templates), len(labels)), dtype=np.float32)
    for i, template in enumerate(templates):
        if template in table:
            probs[i] = table[template]
    return torch.from_numpy(probs), missing
