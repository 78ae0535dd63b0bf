"""Downloads without a network: checksums, mirror fallback, atomic writes and safe tar extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import pytest

from glsverify.data import download
from glsverify.data.cifar10 import load_cifar10
from glsverify.data.mnist import load_mnist
from glsverify.errors import DatasetError
from tests.data.builders import write_tiny_cifar, write_tiny_mnist


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(monkeypatch):
    """Replace the network by a dict url -> bytes; records every url asked for."""
    pages: dict[str, bytes] = {}
    asked: list[str] = []

    def fake_open_url(url: str):
        asked.append(url)
        if url not in pages:
            raise urllib.error.URLError("unreachable")
        return io.BytesIO(pages[url])

    monkeypatch.setattr(download, "open_url", fake_open_url)
    return pages, asked


def test_download_file_verifies_both_checksums(tmp_path, served):
    pages, asked = served
    payload = b"payload" * 1000
    md5, sha256 = digests(payload)
    pages["https://a/x"] = b"tampered" * 1000
    pages["https://b/x"] = payload
    target = tmp_path / "sub" / "x.gz"
    assert download.download_file(["https://a/x", "https://b/x"], target, md5, sha256) == target
    assert target.read_bytes() == payload and asked == ["https://a/x", "https://b/x"]
    assert download.file_matches(target, md5, sha256)
    assert not download.file_matches(target, md5, "0" * 64)
    assert list(target.parent.iterdir()) == [target]  # no temporary files left behind


def test_failed_download_leaves_nothing_and_lists_each_url(tmp_path, served):
    pages, _ = served
    pages["https://a/x"] = b"wrong"
    md5, sha256 = digests(b"right")
    target = tmp_path / "x.gz"
    with pytest.raises(DatasetError) as info:
        download.download_file(["https://a/x", "https://b/x"], target, md5, sha256)
    message = str(info.value)
    assert message.startswith("could not download x.gz: https://a/x: md5 mismatch")
    assert "https://b/x: <urlopen error unreachable>" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        download.download_file(["https://a/x"], target, digests(b"wrong")[0], sha256)


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link_info(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_safe_extract_writes_files_and_folders(tmp_path):
    folder = tarfile.TarInfo("top")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(tmp_path / "ok.tar.gz", [(folder, None), (file_info("top/a.bin"), b"abc"),
                                                (file_info("top/deep/b.txt"), b"b")])
    target = tmp_path / "out"
    written = download.safe_extract_tar(archive, target)
    assert sorted(p.relative_to(target.resolve()).as_posix() for p in written) == ["top/a.bin",
                                                                                   "top/deep/b.txt"]
    assert (target / "top" / "a.bin").read_bytes() == b"abc"


@pytest.mark.parametrize("bad, reason", [
    ((file_info("../escape.txt"), b"x"), "unsafe path"),
    ((file_info("top/../../escape.txt"), b"x"), "unsafe path"),
    ((file_info("/tmp/escape.txt"), b"x"), "unsafe path"),
    ((link_info("top/link", tarfile.SYMTYPE, "/etc/passwd"), None), "no links"),
    ((link_info("top/hard", tarfile.LNKTYPE, "top/a.bin"), None), "no links"),
    ((link_info("top/dev", tarfile.CHRTYPE, ""), None), "no links"),
])
def test_safe_extract_refuses_before_writing_anything(tmp_path, bad, reason):
    archive = make_tar(tmp_path / "bad.tar.gz", [(file_info("top/a.bin"), b"abc"), bad])
    target = tmp_path / "out"
    with pytest.raises(DatasetError, match=f"bad.tar.gz: refusing member .*{reason}"):
        download.safe_extract_tar(archive, target)
    assert not target.exists() and not (tmp_path / "escape.txt").exists()


def test_safe_extract_refuses_paths_through_existing_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "out"
    target.mkdir()
    (target / "top").symlink_to(outside)
    archive = make_tar(tmp_path / "a.tar.gz", [(file_info("top/a.bin"), b"abc")])
    with pytest.raises(DatasetError, match="it leaves"):
        download.safe_extract_tar(archive, target)
    assert list(outside.iterdir()) == []


def test_corrupt_archive(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [(file_info("a.bin"), bytes(range(256)) * 400)])
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetError, match="corrupt or truncated archive"):
        download.safe_extract_tar(archive, tmp_path / "out")


def test_download_mnist_end_to_end(tmp_path, served, monkeypatch):
    pages, asked = served
    source = tmp_path / "source"
    arrays = write_tiny_mnist(source, gz=True)
    checksums = {}
    for path in source.iterdir():
        data = path.read_bytes()
        checksums[path.name] = digests(data)
        pages[download.MNIST_MIRRORS[1] + path.name] = data  # only the second mirror answers
    monkeypatch.setattr(download, "MNIST_CHECKSUMS", checksums)
    target = tmp_path / "mnist"
    assert download.download_mnist(target) == target
    assert load_mnist(target).train.labels.tolist() == arrays["train_labels"].tolist()
    assert len(asked) == 8
    download.download_mnist(target)  # everything present: no request at all
    assert len(asked) == 8


def test_download_cifar10_end_to_end(tmp_path, served, monkeypatch):
    pages, asked = served
    source = tmp_path / "source"
    batches = write_tiny_cifar(source / "cifar-10-batches-py")
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    pages[download.CIFAR10_URL] = archive.read_bytes()
    monkeypatch.setattr(download, "CIFAR10_MD5", digests(archive.read_bytes())[0])
    target = tmp_path / "cifar10"
    download.download_cifar10(target)
    assert load_cifar10(target).test.labels.tolist() == batches["test_batch"][1]
    assert (target / download.CIFAR10_ARCHIVE).is_file()
    download.download_cifar10(target)
    assert asked == [download.CIFAR10_URL]


def test_download_cifar10_archive_without_batches(tmp_path, served, monkeypatch):
    pages, _ = served
    archive = make_tar(tmp_path / "a.tar.gz", [(file_info("readme.txt"), b"hi")])
    pages[download.CIFAR10_URL] = archive.read_bytes()
    monkeypatch.setattr(download, "CIFAR10_MD5", digests(archive.read_bytes())[0])
    with pytest.raises(DatasetError, match="does not contain cifar-10-batches-py"):
        download.download_cifar10(tmp_path / "cifar10")


def test_published_checksums_match_the_shared_files(shared_data_dir):
    folder = shared_data_dir / "mnist"
    if not folder.is_dir():
        pytest.skip("real MNIST files not present")
    for name, (md5, sha256) in download.MNIST_CHECKSUMS.items():
        assert download.file_matches(folder / name, md5, sha256), name
