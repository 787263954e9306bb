"""search.bucket_shapes (issue 12): grouped op calls padded to a few fixed batch sizes, with the real rows unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mpnas.config import ConfigError
from mpnas.data.prepared import PreparedDataset
from mpnas.nas.search import SearchEngine, build_space
from mpnas.nas.supernet import MIX, ZERO, SuperNet, bucket_ladder, bucket_of

DOMAINS = ["alpha", "beta", "gamma"]


class ConvBatches(TorchFunctionMode):
    """Records the input shape of every F.conv2d call."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.conv2d or func is torch.conv2d:
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def test_ladder():
    assert bucket_ladder(1) == [1]
    assert bucket_ladder(6) == [1, 2, 4, 6]
    assert bucket_ladder(10) == [1, 2, 4, 8, 10]
    assert [bucket_of(g, 10) for g in range(1, 11)] == [1, 2, 4, 4, 8, 8, 8, 8, 10, 10]


def _paths(space, n: int, seed: int) -> list[list]:
    """Random paths with MIX and zero, plus two identical ones (so some op has 3 units: padded to 4)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n - 2):
        path = []
        for layer in space.layers:
            choices = layer.choices() + [MIX]
            path.append(choices[int(torch.randint(len(choices), (1,), generator=g))])
        out.append(path)
    return out + [out[0], out[0]]


def _run(net, xs, paths, bucket: bool):
    net.zero_grad(set_to_none=True)
    inputs = [x.clone().requires_grad_(True) for x in xs]
    with ConvBatches() as seen:
        feats = net.forward_units(inputs, paths, grouped=True, bucket=bucket)
    loss = sum((f * (i + 1)).square().mean() for i, f in enumerate(feats))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return torch.stack(feats), loss.detach(), grads, [x.grad for x in inputs], seen.shapes


def test_bucketed_units_equal_unbucketed_outputs_loss_and_gradients(tiny_config):
    space = build_space(tiny_config())
    torch.manual_seed(0)
    net = SuperNet(space)
    xs = [torch.randn(4, 3, 16, 16) * (1 + i) + i for i in range(7)]  # different statistics per unit
    paths = _paths(space, 7, seed=5)
    fa, la, ga, xa, shapes_a = _run(net, xs, paths, bucket=True)
    fb, lb, gb, xb, shapes_b = _run(net, xs, paths, bucket=False)
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(la, lb, rtol=1e-6, atol=1e-7)
    assert ga.keys() == gb.keys()
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-6, msg=n)
    for a, b in zip(xa, xb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    allowed = {4 * b for b in bucket_ladder(7)}
    assert {s[0] for s in shapes_a} <= allowed
    assert {s[0] for s in shapes_b} - allowed, "the unbucketed run should have met an off-ladder batch (3 units)"


def test_zero_segments_do_not_leak_into_a_unit(tiny_config):
    """A unit's features do not depend on how many pad segments its calls carried (no statistics mixing)."""
    space = build_space(tiny_config())
    torch.manual_seed(1)
    net = SuperNet(space)
    path = [layer.choices()[-1] for layer in space.layers]
    other = [ZERO if layer.allow_zero else layer.choices()[0] for layer in space.layers]
    xs = [torch.randn(4, 3, 16, 16) * 3 + 1 for _ in range(5)]
    paths = [path, path, path, other, other]  # 3 units -> padded to 4, 2 units not padded
    with torch.no_grad():
        plain = net.forward_units(xs, paths, bucket=False)
        padded = net.forward_units(xs, paths, bucket=True)
    for a, b in zip(plain, padded):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _step_shapes(engine: SearchEngine, steps: int) -> set[tuple[int, ...]]:
    """Input shapes of every searchable layer call (forward pre-hooks) and conv call over `steps` search steps."""
    seen: set[tuple[int, ...]] = set()
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.add(tuple(args[0].shape)))
             for m in engine.nets[0].layers]
    try:
        with ConvBatches() as convs:
            for _ in range(steps):
                engine.run_step()
                engine.step += 1
    finally:
        for h in hooks:
            h.remove()
    return seen | set(convs.shapes)


@pytest.fixture(scope="module")
def engines(tiny_config, tiny_data):
    """Two engines per setting, same seed; 3 domains x 2 paths = 6 units of 4 images (train and reward)."""
    def make(bucket: str) -> SearchEngine:
        cfg = tiny_config("search.steps=20", "search.paths_per_domain=2", "search.rl_delay_fraction=0.1",
                          "search.op_warmup_fraction=0.1", f"search.bucket_shapes={bucket}")
        return SearchEngine(cfg, PreparedDataset(tiny_data), DOMAINS, build_space(cfg))
    return make


def test_search_steps_stay_within_the_bucket_shapes(engines):
    on, off = engines("on"), engines("off")
    assert on.bucket and not off.bucket
    seen_on, seen_off = _step_shapes(on, 6), _step_shapes(off, 6)
    allowed = {4 * b for b in bucket_ladder(6)}  # 4 images per unit
    assert {s[0] for s in seen_on} <= allowed, sorted({s[0] for s in seen_on})
    assert {s[0] for s in seen_off} - allowed, "the test must meet off-ladder batches without buckets"
    assert len({s[0] for s in seen_on}) <= len(allowed)


def test_bucketed_search_steps_match_unbucketed(engines):
    """Same seed: the same paths, losses, rewards and weights with and without buckets (pads change no real row)."""
    on, off = engines("on"), engines("off")
    rows_on, rows_off = [], []
    for _ in range(4):
        rows_on += on.run_step()
        rows_off += off.run_step()
        on.step += 1
        off.step += 1
    for a, b in zip(rows_on, rows_off):
        assert a["argmax"] == b["argmax"]
        for key in ("loss", "reward", "accuracy", "train_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    for (n, p), q in zip(on.nets.named_parameters(), off.nets.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)


def test_bucket_shapes_option(tiny_config, tiny_data):
    with pytest.raises(ConfigError, match="search.bucket_shapes"):
        tiny_config("search.bucket_shapes=sometimes")
    assert tiny_config("search.bucket_shapes=on").search.bucket_shapes == "on"  # YAML's bare on is a boolean
    assert tiny_config("search.bucket_shapes=off").search.bucket_shapes == "off"
    cfg = tiny_config()
    assert cfg.search.bucket_shapes == "auto"
    assert not SearchEngine(cfg, PreparedDataset(tiny_data), DOMAINS, build_space(cfg)).bucket  # auto: CUDA only
    grouped_off = tiny_config("search.bucket_shapes=on", "search.grouped=false")
    assert not SearchEngine(grouped_off, PreparedDataset(tiny_data), DOMAINS, build_space(grouped_off)).bucket


def test_the_cuda_options_add_no_host_read(tiny_config, tiny_data, monkeypatch):
    """With buckets and device-resident data (the CUDA path, forced on here) a step still reads back only twice."""
    import sys

    cfg = tiny_config("search.steps=4", "search.rl_delay_fraction=0", "search.op_warmup_fraction=0",
                      "search.paths_per_domain=2", "search.bucket_shapes=on", "data.device_resident=on")
    engine = SearchEngine(cfg, PreparedDataset(tiny_data), DOMAINS, build_space(cfg))
    assert engine.bucket and engine.train_loader.kind == engine.val_loader.kind == "device_resident"
    engine.run_step()
    engine.step += 1
    controller_params = {id(p) for p in engine.controllers.parameters()}
    calls = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=original, _name=name, **kw):
            caller = sys._getframe(1).f_code.co_filename
            if caller.endswith(("nas/search.py", "nas/supernet.py", "data/device.py", "data/loading.py")) \
                    and id(self) not in controller_params:
                calls.append(_name)
            return _orig(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, counted)
    engine.run_step()
    assert calls == ["tolist", "cpu", "numpy"], calls


def test_a_checkpoint_written_before_the_options_existed_resumes(tiny_config, tiny_data, tmp_path):
    """A field added later counts as its default in an older checkpoint; a non-default value is still refused."""
    from mpnas.nas.checkpoint import load_state, save_state
    from mpnas.nas.search import run_search

    cfg = tiny_config("search.steps=2")
    run_search(cfg, tiny_data, tmp_path, progress=False)
    ck = tmp_path / "checkpoint.pt"
    st = load_state(ck)
    del st["config"]["data.device_resident"]
    save_state(ck, st)
    run_search(cfg, tiny_data, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="data.device_resident"):
        run_search(tiny_config("search.steps=2", "data.device_resident=on"), tiny_data, tmp_path, resume=True,
                   progress=False)
