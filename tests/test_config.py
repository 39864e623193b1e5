"""Config validation: each bad input gives one message that names it."""

import copy

import pytest

from vaeflow.config import ConfigError, load_config, run_config, validate_config
from vaeflow.hashing import config_hash


@pytest.fixture()
def config(root):
    return load_config(root / "config/config.yaml", root / "config/schema.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(root, name):
    cfg = load_config(root / "config" / name, root / "config/schema.yaml")
    for dataset in cfg["datasets"]:
        for model in cfg["models"]:
            run = run_config(cfg, dataset, model, cfg["seeds"][0])
            assert run["training"]["steps"] >= 1


@pytest.mark.parametrize(
    ("mutate", "names"),
    [
        (lambda c: c["models"].update(vea={"steps": {"digits": 1}}), ["models", "'vea'", "vae"]),
        (lambda c: c["training"].update(lr="fast"), ["training.lr", "'fast'", "number"]),
        (lambda c: c["models"]["vae"]["options"].update(latnet=3), ["models.vae.options", "'latnet'", "latent_dim"]),
        (lambda c: c.update(seedz=[1]), ["top level", "'seedz'"]),
        (lambda c: c["datasets"].update(cifar={}), ["datasets", "'cifar'", "digits"]),
        (lambda c: c["models"]["realnvp"]["steps"].update(digits=0), ["models.realnvp.steps.digits", "0"]),
        (lambda c: c.pop("training"), ["'training' is a required property"]),
    ],
)
def test_bad_config_names_the_key(config, mutate, names):
    bad = copy.deepcopy(config)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad, "config/schema.yaml", source="config/config.yaml")
    message = str(err.value)
    assert "\n" not in message, "one message, one line"
    for name in names:
        assert name in message


def test_schema_knows_exactly_the_models_and_their_options(root, config):
    """The schema's model names and option keys are the constructors' keyword arguments."""
    import inspect

    import yaml

    from vaeflow.models import MODELS

    schema = yaml.safe_load((root / "config/schema.yaml").read_text())
    assert set(schema["properties"]["models"]["properties"]) == set(MODELS)
    for name, cls in MODELS.items():
        accepted = {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "data_shape", "levels")}
        assert set(schema["$defs"][f"{name}_options"]["properties"]) == accepted, name


def test_run_config_holds_only_its_model_and_dataset(config):
    run = run_config(config, "toy2d", "vae", 1)
    assert run["model"] == "vae" and run["dataset"] == "toy2d" and run["seed"] == 1
    assert run["options"]["latent_dim"] == 2  # dataset_options override options
    assert run["training"]["steps"] == config["models"]["vae"]["steps"]["toy2d"]
    other = copy.deepcopy(config)
    other["models"]["realnvp"]["options"]["hidden"] = 7
    assert config_hash(run_config(other, "toy2d", "vae", 1)) == config_hash(run)
    assert config_hash(run_config(other, "toy2d", "realnvp", 1)) != config_hash(run_config(config, "toy2d", "realnvp", 1))


def test_defaults_are_filled(config):
    assert config["device"] == "auto" and config["threads"] >= 1


def test_training_objective_names_how_each_run_learned(config):
    from vaeflow.evaluation.objective import training_objective

    assert training_objective(run_config(config, "mnist", "iaf", 0), exact=True) == "density distillation from maf"
    assert training_objective(run_config(config, "toy2d", "iaf", 0), exact=True) == "maximum likelihood"
    assert training_objective(run_config(config, "mnist", "vae", 0), exact=False) == "its ELBO"
    flowpp = run_config(config, "mnist", "flowpp", 0)
    assert training_objective(flowpp, False, "variational-dequantisation bound") == "its variational-dequantisation bound"
    iwae = run_config(config, "mnist", "vae", 0)
    iwae["options"]["iwae_k"] = 8
    assert training_objective(iwae, exact=False) == "IWAE-8 bound"


def test_a_standalone_notebook_gets_the_default_studys_analysis_block(root, monkeypatch):
    from vaeflow.config import study_analysis_settings

    monkeypatch.chdir(root)
    block = study_analysis_settings("likelihood")
    assert block["iwae_ks"][-1] == 5000 and block["batch_size"] == 50  # the default filled from the schema
    assert study_analysis_settings("anomaly", "config/smoke.yaml")["max_examples"] == 20
