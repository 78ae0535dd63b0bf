"""``glsverify models build|list``: writes the zoo files (byte-identical to the committed ones) and
refuses unknown names with exit 2."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from glsverify.cli import cli
from glsverify.models.zoo import ZOO

REPO = Path(__file__).resolve().parents[2]


def test_models_build_only(tmp_path):
    result = CliRunner().invoke(cli, ["models", "build", "--out", str(tmp_path), "--only", "cnn3_mnist",
                                      "--only", "mlp_digits"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn3_mnist.onnx", "mlp_digits.onnx"]
    for name in ("cnn3_mnist.onnx", "mlp_digits.onnx"):
        assert (tmp_path / name).read_bytes() == (REPO / "models" / name).read_bytes()
        assert name in result.stdout


def test_models_build_unknown_name_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["models", "build", "--out", str(tmp_path), "--only", "cnn9_mnist"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: unknown zoo model(s) cnn9_mnist; available: " + ", ".join(ZOO)]
    assert not any(tmp_path.iterdir())


def test_models_list():
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0
    for name in ZOO:
        assert name in result.stdout
