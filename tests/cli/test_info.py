"""``glsverify info``: tables and JSON for a model made in the test; unsupported models are reported
with exit 0; bad and missing files exit 2 with one line on stderr and no traceback."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glsverify import __version__
from glsverify.cli import cli, main
from glsverify.onnx.ops import supported_op_names
from tests.onnx.builders import const, make_model, node, rand, save


@pytest.fixture
def small_model(tmp_path):
    nodes = [node("Sub", ["pixels", "m"], "c", name="norm"), node("Flatten", ["c"], "f", axis=1),
             node("Gemm", ["f", "w", "b"], "h", transB=1, name="fc"), node("Relu", ["h"], "scores", name="act")]
    inits = [const("m", [0.5]), const("w", rand(1, 3, 4)), const("b", rand(2, 3))]
    return save(make_model(nodes, [1, 1, 2, 2], inits, input_name="pixels", output_name="scores"), tmp_path)


@pytest.fixture
def softmax_model(tmp_path):
    nodes = [node("Gemm", ["x", "w", "b"], "h", transB=1, name="fc"),
             node("Softmax", ["h"], "p", name="probs"), node("LogSoftmax", ["p"], "y", name="logp")]
    return save(make_model(nodes, [1, 4], [const("w", rand(1, 3, 4)), const("b", rand(2, 3))]), tmp_path,
                "softmax.onnx")


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_info_json_is_one_object(small_model):
    result = run("info", small_model, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inputs"] == [{"name": "pixels", "shape": [1, 1, 2, 2]}]
    assert data["outputs"] == [{"name": "scores", "shape": [1, 3]}]
    assert data["ops"] == {"Flatten": 1, "Gemm": 1, "Relu": 1, "Sub": 1}
    assert data["parameters"] == 1 + 12 + 3
    assert data["supported"] is True and data["unsupported"] == []
    assert [layer["kind"] for layer in data["layers"]] == ["input", "affine", "reshape", "linear", "relu"]


def test_info_text_shows_tables_and_layers(small_model):
    result = run("info", small_model)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("pixels", "[1, 1, 2, 2]", "scores", "[1, 3]", "Gemm", "16 parameters", "supported",
                     "Normalised layers", "affine", "reshape", "linear"):
        assert expected in out, expected


def test_info_reports_unsupported_model_with_exit_zero(softmax_model):
    result = run("info", softmax_model, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["supported"] is False
    assert data["unsupported"] == ["LogSoftmax", "Softmax"]
    assert data["unsupported_nodes"] == [{"op_type": "Softmax", "name": "probs"},
                                         {"op_type": "LogSoftmax", "name": "logp"}]
    assert "layers" not in data
    text = run("info", softmax_model)
    assert text.exit_code == 0
    assert "not supported" in text.stdout and "Softmax (node 'probs')" in text.stdout


def test_info_counts_a_refused_configuration_as_unsupported(tmp_path):
    model = make_model([node("Conv", ["x", "w"], "y", name="conv1d", kernel_shape=[3])], [1, 2, 8],
                       [const("w", rand(1, 3, 2, 3))])
    result = run("info", save(model, tmp_path), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["supported"] is False and data["unsupported"] == ["Conv"]
    assert "2-D" in data["import_error"]


@pytest.mark.parametrize("content", [b"definitely not protobuf \xff\xfe", b""])
def test_info_bad_file_exits_2_with_one_line(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    result = run("info", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_info_missing_file_exits_2(tmp_path):
    result = run("info", tmp_path / "absent.onnx", "--json")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'absent.onnx'}: no such file"]


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"glsverify, version {__version__}"


def test_console_entry_point_exit_codes(tmp_path, small_model, capsys):
    with pytest.raises(SystemExit) as info:
        main(["info", str(tmp_path / "absent.onnx")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    with pytest.raises(SystemExit) as info:
        main(["info", str(small_model), "--json"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)["supported"] is True
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


def test_supported_set_is_listed_in_the_refusal(softmax_model):
    from glsverify.errors import UnsupportedOpError
    from glsverify.onnx import import_onnx

    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(softmax_model)
    assert ", ".join(supported_op_names()) in str(info.value)
