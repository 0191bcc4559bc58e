"""The weight loaders: the embedded Caffe weights and torchvision-layout state dicts."""

import json
from pathlib import Path

import pytest
import torch

from stylize_core.contract.errors import InputError
from stylize_core.engine.vgg import CAFFE, TORCHVISION, fold_input_convention, load_vgg19

from data import make_vgg_reference as reference_module  # tests/data, on pytest's pythonpath

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def caffe_net():
    return load_vgg19()


def test_embedded_weights_match_the_stored_caffe_reference(caffe_net):
    reference = json.loads((DATA / "vgg_reference.json").read_text())
    with torch.no_grad():
        features = caffe_net(reference_module.fixed_input(), set(reference))
    for layer, expected in reference.items():
        got = features[layer]
        assert list(got.shape) == expected["shape"], layer
        assert got.mean().item() == pytest.approx(expected["mean"], rel=1e-3), layer
        assert got.std().item() == pytest.approx(expected["std"], rel=1e-3), layer
        means = got.mean(dim=(0, 2, 3))[:16]
        assert torch.allclose(means, torch.tensor(expected["channel_means"]), rtol=1e-3, atol=1e-3), layer
        assert torch.allclose(got[0, :4, 0, 0], torch.tensor(expected["corner"]), rtol=1e-3, atol=1e-2), layer


def test_folding_the_input_convention_is_exact():
    torch.manual_seed(0)
    weight, bias = torch.randn(8, 3, 3, 3), torch.randn(8)
    image = torch.rand(1, 3, 10, 12)
    for convention in (CAFFE, TORCHVISION):
        network_input = torch.stack([image[:, src] * scale + offset for src, scale, offset in
                                     zip(convention.source, convention.scale, convention.offset)], dim=1)
        padded = torch.nn.functional.pad(network_input, (1, 1, 1, 1), mode="replicate")
        expected = torch.nn.functional.conv2d(padded, weight, bias)
        folded_weight, folded_bias = fold_input_convention(weight, bias, convention)
        got = torch.nn.functional.conv2d(torch.nn.functional.pad(image, (1, 1, 1, 1), mode="replicate"),
                                         folded_weight, folded_bias)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_torchvision_state_dict_gives_torchvisions_features(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.vgg19(weights=None).features[:30].eval()  # up to relu5_1
    reference[0].padding_mode = "replicate"  # the engine pads conv1_1 by replication
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()}, path)
    ours = load_vgg19(str(path))
    image = torch.rand(1, 3, 40, 40)
    normalised = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(normalised)
        got = ours(image, {"relu5_1"})["relu5_1"]
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", None])
def test_a_wrong_weights_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content is None:
        torch.save({"conv.weight": torch.zeros(3)}, path)  # a real state dict, but not VGG19
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match="weights file"):
        load_vgg19(str(path))


def test_missing_weights_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_vgg19(str(tmp_path / "nope.pth"))
