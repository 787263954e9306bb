import pytest
import torch

from mpnas.models.blocks import build_block
from mpnas.nas.supernet import MIX, SuperBottleneck, SuperConv, SuperNet
from mpnas.nas.search import build_space
from mpnas.space import Choice


@pytest.fixture(scope="module")
def space(tiny_config):
    return build_space(tiny_config())


def _module(layer):
    return SuperConv(layer) if layer.kind == "conv" else SuperBottleneck(layer)


def _used(module, layer, c: Choice) -> dict[str, torch.Tensor]:
    """Mask of the parameter entries a choice uses (True = on the path)."""
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in module.named_parameters()}
    if c.kind == "conv":
        masks[f"weights.k{c.kernel}"][:] = True
        masks["bn.weight"][:] = masks["bn.bias"][:] = True
        return masks
    hid = layer.hidden_ch(c)
    if hid != layer.in_ch:
        masks["expand"][:hid] = True
        masks["expand_bn.weight"][:hid] = masks["expand_bn.bias"][:hid] = True
    masks[f"dw.k{c.kernel}"][:hid] = True
    masks["dw_bn.weight"][:hid] = masks["dw_bn.bias"][:hid] = True
    if c.se:
        s = layer.se_ch(c)
        masks["se_reduce"][:s, :hid] = True
        masks["se_reduce_b"][:s] = True
        masks["se_expand"][:hid, :s] = True
        masks["se_expand_b"][:hid] = True
    masks["project"][:, :hid] = True
    masks["project_bn.weight"][:] = masks["project_bn.bias"][:] = True
    return masks


def test_every_choice_runs_and_gets_gradients_on_exactly_its_weights(space):
    torch.manual_seed(0)
    for layer in space.layers:
        module = _module(layer)
        for c in layer.choices():
            module.zero_grad(set_to_none=True)
            x = torch.randn(4, layer.in_ch, layer.in_res, layer.in_res, requires_grad=True)
            y = module(x, c)
            assert y.shape == (4, layer.out_ch, layer.out_res, layer.out_res), (layer.name, c)
            (y * torch.randn_like(y)).sum().backward()
            assert x.grad is not None and x.grad.abs().sum() > 0
            used = _used(module, layer, c) if not c.is_zero else None
            for name, p in module.named_parameters():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                if c.is_zero:
                    assert p.grad is None, (layer.name, c, name)
                    continue
                assert g[~used[name]].abs().sum() == 0, f"{layer.name} {c}: gradient off the path in {name}"
                assert not used[name].any() or p.grad is not None
                assert not used[name].any() or g[used[name]].abs().sum() > 0, f"{layer.name} {c}: no gradient on the path in {name}"


def test_supernet_computes_the_fixed_block_function(space):
    """With the sliced weights copied in, build_block (training-mode BN) gives the same output for every choice."""
    torch.manual_seed(1)
    for layer in space.layers:
        module = _module(layer)
        with torch.no_grad():
            for p in module.parameters():
                p.normal_(0, 0.3)
        for c in layer.choices():
            if c.is_zero:
                continue
            block = build_block(layer, c, 1).train()
            sd = {}
            if c.kind == "conv":
                sd = {"conv.weight": module.weights[f"k{c.kernel}"], "bn.weight": module.bn.weight,
                      "bn.bias": module.bn.bias}
            else:
                hid, s = layer.hidden_ch(c), layer.se_ch(c)
                if hid != layer.in_ch:
                    sd.update({"expand.conv.weight": module.expand[:hid], "expand.bn.weight": module.expand_bn.weight[:hid],
                               "expand.bn.bias": module.expand_bn.bias[:hid]})
                sd.update({"depthwise.conv.weight": module.dw[f"k{c.kernel}"][:hid],
                           "depthwise.bn.weight": module.dw_bn.weight[:hid], "depthwise.bn.bias": module.dw_bn.bias[:hid],
                           "project.conv.weight": module.project[:, :hid], "project.bn.weight": module.project_bn.weight,
                           "project.bn.bias": module.project_bn.bias})
                if c.se:
                    sd.update({"se.reduce.weight": module.se_reduce[:s, :hid], "se.reduce.bias": module.se_reduce_b[:s],
                               "se.expand.weight": module.se_expand[:hid, :s], "se.expand.bias": module.se_expand_b[:hid]})
            missing, unexpected = block.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
            assert not unexpected and all("running" in m or "num_batches" in m for m in missing), (missing, unexpected)
            x = torch.randn(6, layer.in_ch, layer.in_res, layer.in_res)
            torch.testing.assert_close(module(x, c), block(x, 0), rtol=1e-4, atol=1e-4, msg=f"{layer.name} {c}")


def _paths(space, n):
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(n):
        path = []
        for layer in space.layers:
            choices = layer.choices() + [MIX]
            path.append(choices[int(torch.randint(len(choices), (1,), generator=g))] if i % 3 else choices[-2])
        out.append(path)
    return out


def test_grouped_equals_naive_outputs_and_gradients(space):
    torch.manual_seed(2)
    net = SuperNet(space)
    xs = [torch.randn(4, 3, 16, 16) + i for i in range(6)]  # different statistics per unit
    paths = _paths(space, 6)
    results = []
    for grouped in (True, False):
        net.zero_grad(set_to_none=True)
        feats = net.forward_units(xs, paths, grouped=grouped)
        loss = sum((f * (i + 1)).square().mean() for i, f in enumerate(feats))
        loss.backward()
        grads = {n: p.grad.clone() if p.grad is not None else None for n, p in net.named_parameters()}
        results.append((torch.stack(feats), loss.detach(), grads))
    (fa, la, ga), (fb, lb, gb) = results
    torch.testing.assert_close(fa, fb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    for n in ga:
        assert (ga[n] is None) == (gb[n] is None), n
        if ga[n] is not None:
            torch.testing.assert_close(ga[n], gb[n], rtol=1e-3, atol=1e-5, msg=n)


def test_grouped_batch_norm_keeps_segments_apart(space):
    """A unit's output does not depend on what other units share its group (no statistics mixing)."""
    torch.manual_seed(4)
    net = SuperNet(space)
    path = [layer.choices()[-1] for layer in space.layers]
    a, b = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16) * 5 + 3
    alone = net.forward_units([a], [path])[0]
    together = net.forward_units([a, b], [path, path])[0]
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-5)
