"""``--download``: fetch MNIST and CIFAR-10 from their canonical hosts, checksummed.

Every file is streamed to a temporary file, hashed on the way, and renamed into place only if its
md5 (and, for MNIST, sha256) match the published values, so a partial or tampered download never
appears under the final name. The CIFAR-10 archive is extracted member by member after every
member has been checked: only regular files and folders, and no path that leaves the target
folder. :func:`open_url` is the only function that touches the network (tests replace it).
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.request
import zlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from glsverify.errors import DatasetError
from glsverify.io_utils import atomic_save

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision uses first
    "http://yann.lecun.com/exdb/mnist/",
)
# file -> (md5, sha256) of the .gz as published (torchvision checks the md5s)
MNIST_CHECKSUMS: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte.gz": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (
        "d53e105ee54ea40749a09fcbcd1e9432",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (
        "9fb629c4189551a2d022fa330f9573f3",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (
        "ec29112dd5afa0611ce80d1b7f02629c",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0


def open_url(url: str) -> BinaryIO:
    """An open binary stream of ``url`` (the module's only network access)."""
    request = urllib.request.Request(url, headers={"User-Agent": "glsverify"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (fixed https/http URLs)


def file_digests(path: Path) -> tuple[str, str]:
    """``(md5, sha256)`` hex digests of a file."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def file_matches(path: Path, md5: str, sha256: str | None = None) -> bool:
    """True if ``path`` is a file with the given md5 (and sha256, when given)."""
    if not path.is_file():
        return False
    got_md5, got_sha256 = file_digests(path)
    return got_md5 == md5 and (sha256 is None or got_sha256 == sha256)


def download_file(urls: Sequence[str], target: Path, md5: str, sha256: str | None = None) -> Path:
    """Fetch ``target`` from the first of ``urls`` that serves it with the right checksums."""
    failures = []
    for url in urls:
        try:
            with open_url(url) as response:
                atomic_save(target, lambda handle: _copy_verified(response, handle, md5, sha256))
            return target
        except (OSError, ValueError, http.client.HTTPException, DatasetError) as error:
            # URLError, HTTPError and timeouts are OSErrors; IncompleteRead is an HTTPException
            failures.append(f"{url}: {error}")
    raise DatasetError(f"could not download {target.name}: {'; '.join(failures)}")


def _copy_verified(source: BinaryIO, handle: BinaryIO, md5: str, sha256: str | None) -> None:
    got_md5, got_sha256 = hashlib.md5(), hashlib.sha256()
    while chunk := source.read(CHUNK_BYTES):
        got_md5.update(chunk)
        got_sha256.update(chunk)
        handle.write(chunk)
    if got_md5.hexdigest() != md5:
        raise DatasetError(f"md5 mismatch (got {got_md5.hexdigest()}, expected {md5})")
    if sha256 is not None and got_sha256.hexdigest() != sha256:
        raise DatasetError(f"sha256 mismatch (got {got_sha256.hexdigest()}, expected {sha256})")


def safe_extract_tar(archive: Path, target_dir: Path) -> list[Path]:
    """Extract ``archive`` into ``target_dir`` and return the files written.

    Every member is checked before anything is written: only regular files and folders, no
    absolute names, no ``..`` and nothing that would resolve outside ``target_dir``.
    """
    root = target_dir.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            destinations = [_checked_destination(member, root, archive) for member in members]
            written = []
            for member, destination in zip(members, destinations, strict=True):
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                source = tar.extractfile(member)
                assert source is not None  # regular files always have a stream
                with source:
                    atomic_save(destination, partial(shutil.copyfileobj, source))
                written.append(destination)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise DatasetError(f"{archive}: corrupt or truncated archive ({error})") from error
    return written


def _checked_destination(member: tarfile.TarInfo, root: Path, archive: Path) -> Path:
    name = PurePosixPath(member.name)
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive}: refusing member {member.name!r}: only regular files and "
                           "folders are extracted (no links or devices)")
    if name.is_absolute() or ".." in name.parts or "\\" in member.name or not name.parts:
        raise DatasetError(f"{archive}: refusing member {member.name!r}: unsafe path")
    destination = (root / name).resolve()
    if destination != root and root not in destination.parents:
        raise DatasetError(f"{archive}: refusing member {member.name!r}: it leaves {root}")
    return destination


def download_mnist(folder: Path) -> Path:
    """Make sure the four MNIST files are in ``folder`` (downloading what is missing)."""
    from glsverify.data.mnist import locate

    try:
        locate(folder)
        return folder
    except DatasetError:
        pass
    for name, (md5, sha256) in MNIST_CHECKSUMS.items():
        target = folder / name
        if not file_matches(target, md5, sha256):
            download_file([mirror + name for mirror in MNIST_MIRRORS], target, md5, sha256)
    return folder


def download_cifar10(folder: Path) -> Path:
    """Make sure ``folder`` holds the official ``cifar-10-batches-py`` (downloading it if not)."""
    from glsverify.data.cifar10 import BATCH_FOLDER, TEST_BATCH, TRAIN_BATCHES, candidate_dirs

    names = (*TRAIN_BATCHES, TEST_BATCH)
    if any(all((where / name).is_file() for name in names) for where in candidate_dirs(folder)):
        return folder
    archive = folder / CIFAR10_ARCHIVE
    if not file_matches(archive, CIFAR10_MD5):
        download_file([CIFAR10_URL], archive, CIFAR10_MD5)
    safe_extract_tar(archive, folder)
    if not all((folder / BATCH_FOLDER / name).is_file() for name in names):
        raise DatasetError(f"{archive}: the archive does not contain {BATCH_FOLDER}/ with all batches")
    return folder
