"""TrainConfig: YAML/JSON loading, unknown keys refused, CLI overrides, resolution, clean errors."""

import json

import pytest

from glsverify.errors import ConfigError, DatasetError
from glsverify.train.config import TrainConfig


def test_yaml_and_json_files_load_with_dashes_and_overrides_win(tmp_path):
    (tmp_path / "c.yaml").write_text("method: rgs\nrelaxation: crown-ibp\nbatch-size: 32\nsigma: 0.05\n"
                                     "lr_milestones: [0.5, 0.8]\nfitness_shaping: false\n")
    config = TrainConfig.from_file(tmp_path / "c.yaml")
    assert (config.method, config.relaxation, config.batch_size, config.sigma) == ("rgs", "crown-ibp", 32, 0.05)
    assert config.lr_milestones == (0.5, 0.8) and config.fitness_shaping is False
    overridden = config.updated({"batch_size": 64, "sigma": None})  # None: not given on the command line
    assert overridden.batch_size == 64 and overridden.sigma == 0.05
    (tmp_path / "c.json").write_text(json.dumps({"eps": 0.3, "population": 10, "environment": {"torch": "x"}}))
    assert TrainConfig.from_file(tmp_path / "c.json").population == 10  # a run's config.json is readable


def test_round_trip_through_a_dict():
    config = TrainConfig(method="grad", relaxation="ibp", lr_milestones=(0.1,), max_steps=7)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("content, message", [
    ({"batchsize": 3}, "unknown training option 'batchsize'"),
    ({"epochs": 1.5}, "epochs must be an integer"),
    ({"sigma": "big"}, "sigma must be a number"),
    ({"fitness_shaping": 1}, "fitness_shaping must be true or false"),
    ({"lr_milestones": 0.5}, "lr_milestones must be a list"),
])
def test_bad_keys_and_types_are_refused(content, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(content)


def test_bad_files_give_clean_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid"):
        TrainConfig.from_file(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_file(tmp_path / "list.json")
    (tmp_path / "c.toml").write_text("")
    with pytest.raises(ConfigError, match=".yaml, .yml or .json"):
        TrainConfig.from_file(tmp_path / "c.toml")


@pytest.mark.parametrize("changes, message", [
    ({"sigma": -0.1}, "sigma must be positive"),
    ({"population": 7}, "population must be an even number"),
    ({"relaxation": "zonotope-magic"}, "unknown relaxation 'zonotope-magic'"),
    ({"method": "pgpe", "relaxation": "pgd"}, "use it with --method grad"),
    ({"relaxation": "alpha-crown"}, "for certification"),
    ({"method": "sgd"}, "unknown method 'sgd'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"eps_ramp_start": 0.6, "eps_ramp_end": 0.5}, "eps ramp"),
    ({"robust_weight": 2.0}, "robust_weight must be in"),
    ({"optimizer": "sgd"}, "unknown optimizer"),
    ({"lr": 0.0}, "lr must be positive"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"cert_method": "magic"}, "unknown relaxation 'magic'"),
    ({"lr_milestones": (0.9, 0.5)}, "lr_milestones must be sorted"),
])
def test_validation_names_the_bad_option(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_missing_data_dir_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        TrainConfig(dataset="mnist", data_dir=str(tmp_path / "nowhere")).validate()


def test_resolution_fills_method_dependent_defaults():
    assert TrainConfig(method="grad").resolved().lr == 5e-4
    assert TrainConfig(method="pgpe", optimizer="clipup").resolved().lr == 0.02
    assert TrainConfig(method="pgpe", lr=0.1).resolved().lr == 0.1
    assert TrainConfig(device="cpu").resolved().device == "cpu"
    assert TrainConfig().resolved().device in ("cpu", "cuda")


def test_cuda_without_cuda_is_a_clean_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        TrainConfig(device="cuda").resolved()
