"""Tiny dataset files written in the official formats, for the loader tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from glsverify.data.mnist import FILES


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000080<ndim>, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def tiny_mnist_arrays(n_train: int = 12, n_test: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images (with 0 and 255 present) and labels 0-9 for both splits."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    return arrays


def write_tiny_mnist(folder: Path, gz: bool = True, **kwargs) -> dict[str, np.ndarray]:
    """Write the four MNIST files into ``folder``; return the arrays written."""
    arrays = tiny_mnist_arrays(**kwargs)
    for split, (images_name, labels_name) in FILES.items():
        write_file(folder / images_name, idx_bytes(arrays[f"{split}_images"]), gz)
        write_file(folder / labels_name, idx_bytes(arrays[f"{split}_labels"]), gz)
    return arrays


# -- CIFAR-10 -------------------------------------------------------------------------------------

def _py2_string(value: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), which Python 3 reads as bytes."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def _py2_int(value: int) -> bytes:
    return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)


def python2_batch_pickle(data: np.ndarray, labels: list[int], batch_label: bytes = b"batch") -> bytes:
    """A protocol-2 pickle laid out as Python 2's cPickle wrote the official batches.

    Globals ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``; byte
    strings as Python 2 strings; keys ``batch_label``, ``labels``, ``data``, ``filenames``.
    """
    assert data.dtype == np.uint8 and data.ndim == 2
    rows, cols = data.shape
    dtype = (b"cnumpy\ndtype\n" + _py2_string(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + _py2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85"
             + _py2_string(b"b") + b"\x87R"
             + b"(K\x01" + _py2_int(rows) + _py2_int(cols) + b"\x86" + dtype + b"\x89"
             + _py2_string(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(_py2_int(label) for label in labels) + b"e"
    names = b"](" + b"".join(_py2_string(b"img_%d.png" % i) for i in range(rows)) + b"e"
    return (b"\x80\x02}(" + _py2_string(b"batch_label") + _py2_string(batch_label)
            + _py2_string(b"labels") + label_list + _py2_string(b"data") + array
            + _py2_string(b"filenames") + names + b"u.")


def python3_batch_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """The same batch written by today's pickle + numpy (protocol 4, bytes keys)."""
    return pickle.dumps({b"batch_label": b"batch", b"labels": labels, b"data": data}, protocol=4)


def tiny_cifar_arrays(n_train_per_batch: int = 3, n_test: int = 4, seed: int = 0):
    """Five train batches and a test batch of random CHW-ordered rows [n, 3072] with labels."""
    rng = np.random.default_rng(seed)
    batches = {}
    for index in range(1, 6):
        batches[f"data_batch_{index}"] = (
            rng.integers(0, 256, size=(n_train_per_batch, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 10, size=n_train_per_batch)])
    batches["test_batch"] = (rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8),
                             [int(v) for v in rng.integers(0, 10, size=n_test)])
    batches["test_batch"][0][0, :2] = (0, 255)
    return batches


def write_tiny_cifar(folder: Path, python2: bool = True, **kwargs):
    """Write the six official batch files into ``folder``; return ``{name: (data, labels)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = tiny_cifar_arrays(**kwargs)
    encode = python2_batch_pickle if python2 else python3_batch_pickle
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(encode(data, labels))
    return batches


def eran_csv_text(images_hwc: np.ndarray, labels: list[int]) -> str:
    """ERAN's CSV: per line the label, then the pixels in height-width-channel order."""
    return "".join(",".join(str(v) for v in [label, *image.reshape(-1)]) + "\n"
                   for image, label in zip(images_hwc, labels, strict=True))
