"""The training configuration: one dataclass, loaded from YAML or JSON, overridden by CLI values.

Unknown keys are refused (a misspelt option must not pass silently); ``-`` in keys reads as ``_``.
:meth:`TrainConfig.resolved` fills the values whose default depends on other options (the learning
rate, the device) so that the ``config.json`` of every run records exactly what ran, the paper's
*open* knobs included (robust weight, eps ramp, population, sigma and its mode and learning rate,
fitness shaping, optimizer, RGS samples, chunk sizes).

Methods and relaxations (``method`` / ``relaxation``):

- ``pgpe``: zeroth-order Gaussian loss smoothing; any bound relaxation of the engine (``ibp``,
  ``crown-ibp``, ``crown`` = ``deeppoly``, ``deepz`` where available), which need not be differentiable.
- ``rgs``: first-order Gaussian loss smoothing; a differentiable bound relaxation.
- ``grad``: plain gradient training; a bound relaxation (IBP, CROWN-IBP, CROWN training), or
  ``none`` (standard training, eps used only for evaluation), ``pgd`` (PGD adversarial training) or
  ``mtl-ibp`` (MTL-IBP: ``mtl_alpha * IBP + (1 - mtl_alpha) * PGD`` as the robust loss).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from glsverify.errors import ConfigError, DatasetError

METHODS = ("pgpe", "rgs", "grad")
GRAD_ONLY_RELAXATIONS = ("none", "pgd", "mtl-ibp")
NOT_FOR_TRAINING = ("alpha-crown",)  # optimises its own slopes: a certification method
OPTIMIZERS = ("adam", "clipup")
SCHEDULES = ("constant", "step", "cosine")
SIGMA_MODES = ("absolute", "relative")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
ENVIRONMENT_KEY = "environment"  # recorded in config.json next to the options; never an option


@dataclass
class TrainConfig:
    """Every option of ``glsverify train``. Defaults marked *open* are this package's choices for
    settings the paper leaves open (see docs in :mod:`glsverify.train`)."""

    # ---- what and where
    model: str | None = None  # the ONNX network to train (its structure and initial weights)
    output: str | None = None  # RUN_DIR
    dataset: str = "digits"
    data_dir: str | None = None
    init: str | None = None  # warm start: an ONNX file or a training checkpoint (weights only)
    # ---- method
    method: str = "pgpe"
    relaxation: str = "crown"
    eps: float = 0.1  # L-inf radius in [0, 1] pixel space
    robust_weight: float = 1.0  # w in (1 - w) * L_nat + w * L_rob  (open)
    eps_ramp_start: float = 0.0  # fraction of all steps at which eps starts rising from 0 (open)
    eps_ramp_end: float = 0.5  # fraction of all steps at which eps reaches its target (open)
    mtl_alpha: float = 0.5  # MTL-IBP: weight of the IBP loss against the PGD loss
    pgd_train_steps: int = 8  # PGD steps of adversarial / MTL-IBP training
    # ---- length
    epochs: int = 10
    batch_size: int = 128
    max_steps: int | None = None  # cap on optimiser steps (schedules span min(epochs, max_steps))
    time_budget_s: float | None = None  # stop (and checkpoint) after this much training time
    # ---- optimiser
    optimizer: str = "adam"
    lr: float | None = None  # None: 5e-4 (grad, rgs); 2e-3 Adam / 0.02 ClipUp step (pgpe)  (open)
    clipup_momentum: float = 0.9
    clipup_max_speed: float | None = None  # None: 2 * lr (EvoTorch's default)
    lr_schedule: str = "step"
    lr_milestones: tuple[float, ...] = (0.75, 0.9)  # fractions of all steps (step schedule)
    lr_gamma: float = 0.2
    grad_clip: float = 10.0  # gradient-norm clipping of grad and rgs (0 disables); the paper's baselines
    # ---- Gaussian smoothing (open)
    population: int = 64  # PGPE members (antithetic: even)
    sigma: float = 0.01
    sigma_mode: str = "absolute"  # relative: sigma * std(W) per weight tensor (CTBench's knob)
    sigma_lr: float = 0.0  # PGPE's adaptive sigma; 0 keeps it fixed
    fitness_shaping: bool = True  # PGPE centred ranks
    noise_block: int = 8  # PGPE directions per seeded generator
    samples: int = 4  # RGS samples k per step
    pop_chunk: int = 32  # members per bound-engine call (PGPE population, RGS samples)
    # ---- bookkeeping
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 50  # steps
    log_every: int = 1  # steps
    # ---- evaluation (test split)
    eval_samples: int | None = None  # None: the whole test split
    eval_batch_size: int = 256
    eval_pgd_steps: int = 50
    eval_pgd_restarts: int = 3
    cert_method: str = "crown"  # or alpha-crown, ibp, crown-ibp, deepz
    cert_dtype: str = "float64"  # bounds of the certificate (float64 is exact for float32 weights)

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """A config from a mapping, refusing unknown keys; ``-`` in keys reads as ``_``."""
        return cls().updated(values)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        """A config from a ``.yaml``/``.yml`` or ``.json`` file (a run's config.json included)."""
        return cls().updated(read_config_file(path))

    def updated(self, values: Mapping[str, Any]) -> "TrainConfig":
        """A copy with ``values`` applied (``None`` values are ignored: "not given on the command line")."""
        known = {f.name: f for f in fields(self)}
        changes = {}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key == ENVIRONMENT_KEY:
                continue
            if key not in known:
                raise ConfigError(f"unknown training option {raw_key!r}; known: {', '.join(sorted(known))}")
            if value is None:
                continue
            changes[key] = _coerce(key, value, getattr(self, key))
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        return data

    # ------------------------------------------------------------------------------------ resolution
    def resolved(self) -> "TrainConfig":
        """Validate and fill the defaults that depend on other options (learning rate, device)."""
        self.validate()
        changes: dict[str, Any] = {}
        if self.lr is None:
            if self.method == "pgpe":
                changes["lr"] = 2e-3 if self.optimizer == "adam" else 0.02
            else:
                changes["lr"] = 5e-4
        import torch

        if self.device == "auto":
            changes["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        elif self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available here (use --device cpu)")
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise :class:`ConfigError` (or :class:`DatasetError` for a missing data folder) on the first
        bad value, with a one-line message naming the option."""
        from glsverify.data.registry import DATASET_NAMES

        _choice("method", self.method, METHODS)
        _choice("dataset", self.dataset, DATASET_NAMES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, SCHEDULES)
        _choice("sigma_mode", self.sigma_mode, SIGMA_MODES)
        _choice("device", self.device.split(":")[0], DEVICES)
        _choice("cert_dtype", self.cert_dtype, DTYPES)
        self.validate_relaxation()
        from glsverify.bounds.interface import get_relaxation

        get_relaxation(self.cert_method)
        _positive("eps", self.eps, allow_zero=True)
        _positive("sigma", self.sigma)
        _positive("sigma_lr", self.sigma_lr, allow_zero=True)
        _positive("grad_clip", self.grad_clip, allow_zero=True)
        _positive("lr_gamma", self.lr_gamma)
        if self.lr is not None:
            _positive("lr", self.lr)
        if self.clipup_max_speed is not None:
            _positive("clipup_max_speed", self.clipup_max_speed)
        if self.time_budget_s is not None:
            _positive("time_budget_s", self.time_budget_s)
        for name in ("epochs", "batch_size", "samples", "pop_chunk", "checkpoint_every", "log_every",
                     "eval_batch_size", "eval_pgd_restarts", "noise_block"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer (got {getattr(self, name)})")
        for name in ("pgd_train_steps", "eval_pgd_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("max_steps", "eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer (got {getattr(self, name)})")
        if self.population < 2 or self.population % 2:
            raise ConfigError(f"population must be an even number >= 2 (PGPE samples antithetic pairs); "
                              f"got {self.population}")
        for name in ("robust_weight", "mtl_alpha", "clipup_momentum"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0 or (name == "clipup_momentum" and value == 1.0):
                raise ConfigError(f"{name} must be in [0, 1] (got {value})")
        if not 0.0 <= self.eps_ramp_start <= self.eps_ramp_end <= 1.0:
            raise ConfigError(f"eps ramp needs 0 <= eps_ramp_start <= eps_ramp_end <= 1 (fractions of all steps); "
                              f"got {self.eps_ramp_start}, {self.eps_ramp_end}")
        if any(not 0.0 <= m <= 1.0 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ConfigError(f"lr_milestones must be sorted fractions in [0, 1] (got {list(self.lr_milestones)})")
        if not 0 <= self.seed < 2 ** 63:
            raise ConfigError(f"seed must be in [0, 2**63) (got {self.seed})")
        if self.data_dir is not None and self.dataset != "digits" and not Path(self.data_dir).is_dir():
            raise DatasetError(f"data directory {self.data_dir} does not exist")

    def validate_relaxation(self) -> None:
        """The relaxation must exist and suit the method (see the module docstring)."""
        name = self.relaxation.lower().replace("_", "-")
        if name in GRAD_ONLY_RELAXATIONS:
            if self.method != "grad":
                raise ConfigError(f"relaxation {self.relaxation!r} is a gradient-training loss; "
                                  f"use it with --method grad (method {self.method!r} needs a bound relaxation)")
            return
        from glsverify.bounds.interface import get_relaxation, relaxation_names

        try:
            relaxation = get_relaxation(name)
        except ConfigError:
            choices = [n for n in relaxation_names() if n not in NOT_FOR_TRAINING]
            if self.method == "grad":
                choices += list(GRAD_ONLY_RELAXATIONS)
            raise ConfigError(f"unknown relaxation {self.relaxation!r}; choose from {', '.join(choices)}") from None
        if relaxation.name in NOT_FOR_TRAINING:
            raise ConfigError(f"relaxation {self.relaxation!r} is for certification (cert_method), not training")
        if self.method != "pgpe" and not relaxation.differentiable:
            raise ConfigError(f"relaxation {self.relaxation!r} is not differentiable; train it with --method pgpe")

    @property
    def relaxation_key(self) -> str:
        return self.relaxation.lower().replace("_", "-")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file (clean errors for missing or malformed files)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml or .json")
    except (ValueError, ImportError) as error:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"config file {path} is not valid: {str(error).splitlines()[0]}") from None
    except Exception as error:  # noqa: BLE001 - yaml.YAMLError and friends
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options (got {type(data).__name__})")
    return data


def _coerce(key: str, value: Any, current: Any) -> Any:
    """Check a value's type against the field (ints for int fields, numbers for floats, ...)."""
    ftype = {f.name: f.type for f in fields(TrainConfig)}[key]
    if key == "lr_milestones":
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
            raise ConfigError(f"lr_milestones must be a list of numbers (got {value!r})")
        return tuple(float(v) for v in value)
    if "bool" in ftype:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false (got {value!r})")
        return value
    if "int" in ftype and "float" not in ftype:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer (got {value!r})")
        return value
    if "float" in ftype:
        if not _is_number(value):
            raise ConfigError(f"{key} must be a number (got {value!r})")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string (got {value!r})")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        raise ConfigError(f"{name} must be {'non-negative' if allow_zero else 'positive'} (got {value})")
