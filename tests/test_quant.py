"""Int8 weights for decoding: the kernel against its fp32 twin, the traced int8 step against
the eager one, the int8 model against the fp32 model, and the step cache."""

import pytest
import torch
import torch.nn.functional as F

from model_fixtures import (
    assert_traced_step_follows,
    one_thread,
    random_model,
    rel_err,
    tiny_config,
)
from pianomuse.model.quant import Int8Linear, quantize_int8
from pianomuse.model.traced import fast_step, trace_step


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_int8_linear_is_its_fp32_twin():
    """The kernel equals the int8 weight multiplied in fp32, up to the bf16 rounding of its
    input and output rows; and the int8 weight is within half a step of the original."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(64, 200, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(200, 64, generator=g))
        lin.weight[7] = 0.0  # an all-zero row keeps a finite scale
    q = Int8Linear(lin)
    step = q.scale.float()[:, None]
    assert q.qweight.dtype == torch.int8 and q.qweight.abs().max() == 127
    assert ((q.dequantized() - lin.weight).abs() <= step * (0.5 + 1e-2)).all()
    assert q.dequantized()[7].abs().max() == 0
    x = torch.randn(3, 5, 64, generator=g)
    got, want = q(x), q.reference(x)
    assert got.shape == (3, 5, 200) and got.dtype == torch.float32
    assert rel_err(got, want) < 2e-2  # bf16 has 8 bits of mantissa
    assert rel_err(got, F.linear(x, lin.weight)) < 3e-2


def test_int8_step_traced_and_eager_agree_and_follow_fp32():
    """The traced int8 step is the eager int8 model's twin (logits and state, token after
    token, batch 1 and 4); and the int8 model's next-token distributions stay close to the
    fp32 model's (mean KL < 1e-3 nats) with the original left untouched."""
    model = random_model(tiny_config()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quant = quantize_int8(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        prompt = torch.randint(0, 40, (1, 25), generator=g)
        _, state = quant.prefill(prompt)
        traced = trace_step(quant, state)
        assert_traced_step_follows(quant, traced, state, g, batches=(1, 4), steps=5, tol=1e-5)
        seq = torch.randint(0, 40, (2, 60), generator=g)
        lp32 = model(seq).log_softmax(-1)
        lp8 = quant(seq).log_softmax(-1)
        kl = (lp32.exp() * (lp32 - lp8)).sum(-1).mean()
        assert 0 < kl < 1e-3


def test_int8_hidden_layer_in_bf16_is_the_fp32_detour_to_the_bit():
    """The channel mix's hidden layer kept in bf16 gives the numbers of the fp32 detour
    (bf16 output widened, relu^2 in fp32, rounded again by the next projection), on the
    sequence path and the step's."""
    import copy

    quant = quantize_int8(random_model(tiny_config()).eval())
    detour = copy.deepcopy(quant)
    for block in detour.blocks:
        assert block.ffn.key.out_dtype == torch.bfloat16
        block.ffn.key.out_dtype = None
    g = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        idx = torch.randint(0, 40, (2, 30), generator=g)
        (a, sa), (b, sb) = quant.prefill(idx), detour.prefill(idx)
        assert torch.equal(a, b) and all(map(torch.equal, sa.wkv, sb.wkv))
        tok = idx[:, -1]
        assert torch.equal(quant.step(tok, sa)[0], detour.step(tok, sb)[0])


def test_fast_step_caches_per_precision_and_retraces_new_weights():
    """One graph per precision is kept on the model; after the weights change (an optimizer
    step, a load), the next call records a new one, whose logits follow the new weights."""
    model = random_model(tiny_config()).eval()
    with torch.inference_mode():
        _, state = model.prefill(torch.arange(10)[None])
        tok = torch.tensor([3])
        s8 = fast_step(model, state, "int8")
        s32 = fast_step(model, state, "fp32")
        assert s8 is fast_step(model, state, "int8") and s32 is fast_step(model, state, "fp32")
        assert s8 is not s32
        for traced in (s8, s32):  # graphs, not the eager fallback
            assert isinstance(traced.graph, torch.jit.ScriptModule)
        assert rel_err(s32(tok, state.clone())[0], model.step(tok, state)[0]) < 1e-6
        with torch.no_grad():
            model.head.weight.mul_(2.0)
        new8, new32 = fast_step(model, state, "int8"), fast_step(model, state, "fp32")
        assert new8 is not s8 and new32 is not s32
        want = model.step(tok, state)[0]
        assert rel_err(new32(tok, state.clone())[0], want) < 1e-6
        assert rel_err(new8(tok, state.clone())[0], want) < 3e-2
    with pytest.raises(ValueError, match="precision"):
        fast_step(model, state, "int4")


def test_int8_falls_back_to_fp32_when_the_kernel_is_missing(monkeypatch):
    """Where no int8 kernel runs (another CPU, an older torch), decoding takes the fp32 graph."""
    import pianomuse.model.quant as quant

    def refuse(*args):
        raise RuntimeError("no int8 kernel")

    monkeypatch.setattr(quant.torch.ops.aten, "_weight_int8pack_mm", refuse)
    model = random_model(tiny_config()).eval()
    assert quant.inference_model(model, "int8") is model
    with torch.inference_mode():
        _, state = model.prefill(torch.arange(10)[None])
        step = fast_step(model, state, "int8")
        tok = torch.tensor([5])
        assert rel_err(step(tok, state.clone())[0], model.step(tok, state)[0]) < 1e-6


def test_the_int8_copy_is_made_whatever_inference_keeps_on_the_model():
    """The int8 copy is remade when the weights change, after decoding has kept its graphs
    and prefills (with a lock) on the model: none of that is copied, none of it is lost,
    and the copy is the int8 one, not a silent fall back to fp32 (which made every step of
    a `complete` twice as slow)."""
    from pianomuse.generate.decode import continue_tokens
    from pianomuse.generate.sampling import Sampling
    from pianomuse.model.engine import TorchEngine
    from pianomuse.model.quant import inference_model

    model = random_model(tiny_config()).eval()
    ctx = torch.arange(20).numpy() % 40
    engine = TorchEngine(model)
    continue_tokens(engine, ctx, candidates=2, sampling=Sampling(), bar_id=1, max_new_tokens=5)
    kept = engine.kept()
    with torch.no_grad():
        model.head.weight.mul_(2.0)  # new weights: the int8 copy is made again
    quant = inference_model(model, "int8")
    assert quant is not model and isinstance(quant.blocks[0].att.key, Int8Linear)
    assert "_inference_cache" not in quant.__dict__
    assert model.__dict__["_inference_cache"]["prefills_int8"][1] is kept
