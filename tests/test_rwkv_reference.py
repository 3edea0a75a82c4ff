"""Parity with BlinkDL's reference implementation (the `rwkv` package) and checkpoint I/O."""

import importlib
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from model_fixtures import one_thread, random_model, rel_err, tiny_config
from pianomuse.model import (
    RWKV7,
    CheckpointError,
    RWKVState,
    load_checkpoint,
    load_model,
    reinit_vocab,
    save_model,
    save_official,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def rwkv_model_cls():
    """`rwkv.model.RWKV` as RWKV_x070. The package reads RWKV_V7_ON etc. at import time, so
    the variables are set first and the module is (re)imported under them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RWKV_V7_ON", "1")
        mp.setenv("RWKV_JIT_ON", "1")
        mp.setenv("RWKV_CUDA_ON", "0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
            module = sys.modules.get("rwkv.model")
            module = importlib.reload(module) if module else importlib.import_module("rwkv.model")
        assert module.RWKV is module.RWKV_x070
        yield module.RWKV


def load_reference(rwkv_model_cls, path):
    # The package appends ".pth" to the name it is given.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return rwkv_model_cls(str(path.with_suffix("")), "cpu fp32")


def assert_parity(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Largest absolute difference below 1e-4 of the largest logit."""
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-4 * theirs.abs().max()


def check_against_reference(model: RWKV7, rwkv_model_cls, tmp_path, tokens: list[int]):
    save_official(model, tmp_path / "model.pth")
    ref = load_reference(rwkv_model_cls, tmp_path / "model.pth")
    model.eval()
    idx = torch.tensor([tokens])
    with torch.no_grad():
        ours = model(idx)[0]
        theirs, _ = ref.forward(tokens, None, full_output=True)
        assert_parity(ours, theirs)

        # their one-token path, continuing from their sequence state, vs our step
        _, their_state = ref.forward(tokens[:-3], None)
        _, state = model.prefill(idx[:, :-3])
        for pos in range(len(tokens) - 3, len(tokens)):
            theirs_one, their_state = ref.forward([tokens[pos]], their_state)
            ours_one, state = model.step(idx[:, pos], state)
            assert_parity(ours_one[0], theirs_one)
            assert_parity(ours_one[0], ours[pos])
        # their state layout: per layer [time-mix shift, wkv (H, N, N) fp32, channel-mix shift]
        for i in range(model.config.n_layer):
            assert rel_err(state.att_shift[i][0], their_state[3 * i]) < 1e-4
            assert rel_err(state.wkv[i][0], their_state[3 * i + 1]) < 1e-4
            assert rel_err(state.ffn_shift[i][0], their_state[3 * i + 2]) < 1e-4


@pytest.mark.parametrize(
    "overrides", [{}, {"n_embd": 128, "head_size": 64}], ids=["C64-N32", "C128-N64"]
)
def test_random_checkpoint_matches_rwkv_package(overrides, rwkv_model_cls, tmp_path):
    model = random_model(tiny_config(**overrides), seed=3)
    tokens = torch.randint(0, 40, (37,), generator=torch.Generator().manual_seed(4)).tolist()
    check_against_reference(model, rwkv_model_cls, tmp_path, tokens)


def test_model_trained_here_matches_rwkv_package(rwkv_model_cls, tmp_path):
    torch.manual_seed(0)
    model = RWKV7(tiny_config())  # official init, then a few real AdamW steps
    data = torch.randint(0, 40, (4, 33), generator=torch.Generator().manual_seed(5))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = F.cross_entropy(model(data[:, :-1]).reshape(-1, 40), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.blocks[1].att.output.weight.abs().max() > 0
    check_against_reference(model, rwkv_model_cls, tmp_path, data[0].tolist())


def test_layer0_value_residual_weights_are_optional(rwkv_model_cls, tmp_path):
    model = random_model(tiny_config(), seed=6).eval()
    sd = model.official_state_dict()
    assert "blocks.0.att.v0" not in sd and "blocks.1.att.v0" in sd  # as BlinkDL's releases
    # Some RWKV-LM versions also save (unused) value-residual weights for layer 0.
    with_v0 = dict(sd)
    for name in ("v0", "v1", "v2"):
        with_v0[f"blocks.0.att.{name}"] = torch.randn_like(sd[f"blocks.1.att.{name}"])
    torch.save(with_v0, tmp_path / "with_v0.pth")
    torch.save(sd, tmp_path / "without_v0.pth")
    loaded = load_model(tmp_path / "with_v0.pth")
    assert loaded.config == model.config
    idx = torch.randint(0, 40, (1, 20), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = model(idx)
        assert torch.equal(loaded.eval()(idx), ours)
        for name in ("with_v0.pth", "without_v0.pth"):
            theirs, _ = load_reference(rwkv_model_cls, tmp_path / name).forward(
                idx[0].tolist(), None, full_output=True
            )
            assert_parity(ours[0], theirs)


def test_load_infers_config_and_round_trips(tmp_path):
    config = tiny_config(n_layer=3, ffn_mult=3.5, decay_lora=16, gate_lora=48)
    model = random_model(config, seed=8).eval()
    save_official(model, tmp_path / "m.pth")
    loaded = load_checkpoint(tmp_path / "m.pth")
    assert loaded.source_format == "official" and loaded.model.config == config
    save_model(loaded.model, tmp_path / "m.safetensors")
    again = load_checkpoint(tmp_path / "m.safetensors")
    assert again.source_format == "pianomuse" and again.tokenizer_config is None
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


def test_reinit_vocab_keeps_blocks(tmp_path):
    model = random_model(tiny_config(vocab_size=50), seed=9)
    blocks = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("blocks.")}
    sd = reinit_vocab(model.official_state_dict(), 30)
    assert sd["emb.weight"].shape == (30, 64) and sd["head.weight"].shape == (30, 64)
    assert all(torch.equal(sd[k], v) for k, v in blocks.items())
    torch.save(sd, tmp_path / "base.pth")
    assert load_model(tmp_path / "base.pth").config.vocab_size == 30

    same = reinit_vocab(model, 30)
    assert same is model and model.config.vocab_size == 30
    assert model.emb.weight.abs().max() <= 1e-4
    assert all(torch.equal(model.state_dict()[k], v) for k, v in blocks.items())
    assert model(torch.tensor([[29, 0, 5]])).shape == (1, 3, 30)
    _, state = model.prefill(torch.tensor([[1, 2]]))
    assert model.step(torch.tensor([29]), state)[0].shape == (1, 30)


class NotATensor:
    pass


def bad_files(tmp_path):
    good = random_model(tiny_config(), seed=10).official_state_dict()
    files = {}

    files["text"] = tmp_path / "text.pth"
    files["text"].write_text("hello, not a checkpoint\n")

    files["truncated"] = tmp_path / "truncated.pth"
    torch.save(good, files["truncated"])
    files["truncated"].write_bytes(files["truncated"].read_bytes()[:3000])

    files["object"] = tmp_path / "object.pth"
    torch.save({**good, "extra": NotATensor()}, files["object"])

    files["int"] = tmp_path / "int.pth"
    torch.save({**good, "step": 5}, files["int"])

    files["shape"] = tmp_path / "shape.pth"
    torch.save({**good, "blocks.1.att.k_k": torch.zeros(1, 1, 32)}, files["shape"])

    files["missing"] = tmp_path / "missing.pth"
    torch.save({k: v for k, v in good.items() if k != "blocks.1.att.k_k"}, files["missing"])

    files["nan"] = tmp_path / "nan.pth"
    torch.save({**good, "head.weight": torch.full_like(good["head.weight"], float("nan"))},
               files["nan"])  # fmt: skip

    files["list"] = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], files["list"])

    files["no_config"] = tmp_path / "no_config.safetensors"
    from safetensors.torch import save_file

    save_file({"emb.weight": torch.zeros(2, 2)}, files["no_config"])
    return files


@pytest.mark.parametrize(
    "kind, words",
    [
        ("text", "neither"),
        ("truncated", "not a readable PyTorch checkpoint"),
        ("object", "other than tensors"),
        ("int", "not named tensors"),
        ("shape", "blocks.1.att.k_k has shape"),
        ("missing", "missing keys"),
        ("nan", "NaN"),
        ("list", "dict of tensors"),
        ("no_config", "model_config"),
    ],
)
def test_bad_checkpoints_are_refused(kind, words, tmp_path):
    path = bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError, match=words) as info:
        load_model(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="No such file"):
        load_model(tmp_path / "absent.pth")


def test_state_survives_model_round_trip(tmp_path):
    model = random_model(tiny_config(), seed=11).eval()
    idx = torch.randint(0, 40, (1, 12), generator=torch.Generator().manual_seed(12))
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors").eval()
    with torch.no_grad():
        a, sa = model.prefill(idx)
        b, sb = loaded.prefill(idx)
    assert torch.equal(a, b)
    assert isinstance(sb, RWKVState) and torch.equal(sa.state_dict()["wkv"], sb.state_dict()["wkv"])


def test_model_trained_by_pianomuse_train_runs_in_rwkv(
    trained_model, song_ids, rwkv_model_cls, tmp_path
):
    """The file `pianomuse train` writes loads with `load_model`, and its official export
    gives the `rwkv` package's logits on real music."""
    model = load_model(trained_model)
    ckpt = load_checkpoint(trained_model)
    assert ckpt.tokenizer_hash is not None and ckpt.source_format == "pianomuse"
    check_against_reference(model, rwkv_model_cls, tmp_path, song_ids[:40].tolist())
