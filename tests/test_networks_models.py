"""Tests of superpos.networks.models: offline models, untrained controls, checkpoints, layers, predictions."""
import numpy as np
import pytest
import torch

from superpos.core import ConfigError, DataError, MissingFileError
from superpos.networks.extraction import extract
from superpos.networks.models import autocast_dtype, default_layers, layer_names, load_model, predict
from superpos.stimuli.natural import natural_stimuli, photo_stimuli

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lite():
    return load_model("efficientnet_lite0")


def test_efficientnet_lite0_imagenet_predictions(lite):
    predictions = predict(lite, photo_stimuli(224), topk=5, device="cpu")
    top5 = predictions.groupby("stimulus")["class_name"].apply(set)
    assert top5["chelsea"] & {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
    assert top5["coffee"] & {"espresso", "cup", "coffee mug"}
    first = predictions[predictions["rank"] == 1].set_index("stimulus")
    assert first.loc["chelsea", "probability"] > 0.3
    probability_sums = predictions.groupby("stimulus")["probability"].sum()
    assert (probability_sums <= 1 + 1e-5).all()
    ranked = predictions.groupby("stimulus")["probability"].apply(lambda p: bool(np.all(np.diff(p.values) <= 0)))
    assert ranked.all()


def test_pretrained_and_untrained_differ(lite):
    stim = natural_stimuli(12, 64, seed=3)
    untrained = load_model("efficientnet_lite0", weights="untrained")
    assert untrained.weights == "untrained"
    layer = "_blocks.4"
    a = extract(lite, layer, stim, progress=False).values
    b = extract(untrained, layer, stim, progress=False).values
    assert a.shape == b.shape == (12, 40)
    assert not np.allclose(a, b, atol=1e-3)
    # the untrained control is seeded: the same seed gives the same network
    again = extract(load_model("efficientnet_lite0", weights="untrained"), layer, stim, progress=False).values
    np.testing.assert_array_equal(b, again)
    other = load_model("efficientnet_lite0", weights="untrained", seed=1)
    assert not torch.equal(other.module._conv_stem.weight, untrained.module._conv_stem.weight)


def test_torchvision_and_cifar_models_offline(tmp_path):
    resnet = load_model("resnet18", weights="untrained")
    assert default_layers(resnet) == ["layer1", "layer2", "layer3", "layer4"]
    assert resnet.input_size == 224 and resnet.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert len(resnet.categories) == 1000
    with pytest.raises(ConfigError, match="unknown model"):
        load_model("resnet5O")
    cifar = load_model("cifar_resnet50", weights="untrained", seed=5)
    assert cifar.module.conv1.kernel_size == (3, 3) and cifar.module.conv1.stride == (1, 1)
    assert cifar.categories[3] == "cat" and cifar.input_size == 32
    path = tmp_path / "cifar.pt"
    torch.save(cifar.module.state_dict(), path)
    loaded = load_model("cifar_resnet50", checkpoint=path)
    assert loaded.weights == "checkpoint:cifar.pt"
    stim = natural_stimuli(4, 32, seed=0)
    np.testing.assert_array_equal(extract(cifar, "layer2", stim, progress=False).values,
                                  extract(loaded, "layer2", stim, progress=False).values)
    with pytest.raises(DataError, match="wrong shape"):
        load_model("resnet50", weights="untrained", checkpoint=path)
    with pytest.raises(MissingFileError):
        load_model("cifar_resnet50", checkpoint=tmp_path / "missing.pt")


def test_layer_names(lite):
    names = layer_names(lite)
    assert names[0] == "_conv_stem" and "_blocks.15" in names and "_fc" in names
    assert set(default_layers(lite)) <= set(names)


def test_autocast_dtype_rules():
    assert autocast_dtype(None, torch.device("cpu")) is None
    assert autocast_dtype(False, torch.device("cuda")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="amp must be"):
        autocast_dtype("fp8", torch.device("cpu"))
