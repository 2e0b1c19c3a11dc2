"""The STUNet's time-major (channels-last) layout: the same function as the (b c t h w) layout, with no layout flips
between the spatial and the temporal layers, a GroupNorm whose channels-last backward is exact, and a temporal conv
whose weight gradient runs as matmuls."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lumiere_pl.config import TemporalConfig
from lumiere_pl.models.kernels import (KERNELS, _ChannelsLastGroupNorm, _TimeConvFunction, is_channels_last,
                                      time_conv_weight_grad, using)
from lumiere_pl.models.layers import GroupNorm
from lumiere_pl.models.stunet import STUNet
from lumiere_pl.models.temporal import TimeConv
from test_stunet import cond, make_t2i


@pytest.mark.parametrize("shape,groups", [((3, 16, 5, 7), 4), ((2, 8, 3, 4, 5), 8), ((2, 32, 4, 6), 8)])
def test_channels_last_group_norm_matches_torch(shape, groups):
    """Values and all three gradients equal torch's GroupNorm on contiguous memory; dx stays channels-last."""
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    gn = GroupNorm(groups, shape[1]).double()
    with torch.no_grad():
        gn.weight.normal_()
        gn.bias.normal_()
    x = (torch.randn(shape, dtype=torch.double) * 3 + 1).contiguous(memory_format=fmt).requires_grad_()
    assert is_channels_last(x)
    y = gn(x)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, gn.weight, gn.bias), dy)
    xr = x.detach().contiguous().requires_grad_()
    yr = F.group_norm(xr, groups, gn.weight, gn.bias, gn.eps)
    want = torch.autograd.grad(yr, (xr, gn.weight, gn.bias), dy)
    assert torch.allclose(y, yr, atol=1e-12)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)
    assert got[0].is_contiguous(memory_format=fmt)
    assert torch.autograd.gradcheck(lambda *t: _ChannelsLastGroupNorm.apply(*t, groups, 1e-6),
                                    (x, gn.weight, gn.bias))


def test_ambiguous_strides_are_not_channels_last():
    """A size-1 dim makes strides pass as both layouts: such tensors take torch's own kernel."""
    x = torch.randn(2, 8, 1, 4, 4).contiguous(memory_format=torch.channels_last_3d)
    assert not is_channels_last(x)
    assert not is_channels_last(torch.randn(2, 8, 4, 4))
    assert is_channels_last(torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last))


OPTIONS = {"paper": {}, "all": dict(emb_cond=True, text_attn=True, attn_levels=[0, 1, 2], attn_layers=2),
           "linear": dict(upsample="linear"), "spacetime": dict(attn_kind="spacetime")}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_time_major_layout_is_the_same_function(option):
    """Outputs and parameter gradients agree between the two layouts, after training moved every temporal weight off
    its init (so no module is an identity that would hide a layout bug)."""
    net = STUNet(make_t2i(), TemporalConfig(down_levels=[0, 1], freeze_spatial=False, **OPTIONS[option]))
    with torch.no_grad():
        for p in net.temporal.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, c_noise, c = torch.randn(2, 3, 8, 16, 16), torch.tensor([50.0, 700.0]), cond(2)
    results = []
    for time_major in (False, True):
        net.time_major = time_major
        net.zero_grad()
        out = net(x, c_noise, c)
        out.pow(2).mean().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}))
    (a, ga), (b, gb) = results
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    for k in ga:
        assert torch.allclose(ga[k], gb[k], rtol=1e-3, atol=1e-6), k


def test_temporal_modules_see_time_major_memory():
    """With time_major, every temporal module gets (b c t h w) whose memory is (b t h w c): fold / unfold are views
    and no layer flips the layout back (a flip costs a copy per module, the cost this layout removes)."""
    net = STUNet(make_t2i(), TemporalConfig(down_levels=[0, 1], emb_cond=True, text_attn=True, attn_levels=[1]))
    seen = []
    for key, m in net.temporal.items():
        m.register_forward_pre_hook(lambda m, args, key=key: seen.append((key, is_channels_last(args[0]))))
    net.time_major = True
    out = net(torch.randn(1, 3, 8, 16, 16), torch.tensor([300.0]), cond(1))
    assert len(seen) == len(net.temporal) and all(ok for _, ok in seen), [k for k, ok in seen if not ok]
    assert is_channels_last(out)
    net.time_major, seen[:] = False, []
    net(torch.randn(1, 3, 8, 16, 16), torch.tensor([300.0]), cond(1))
    assert not any(ok for _, ok in seen)


def test_the_layout_follows_the_frame_size_by_default():
    """time_major None (the default): frames under KERNELS.time_major_min_pixels run (b c t h w), where time-major costs
    more (bench_layout: a 16 px train step 1.18x), and from it up time-major; the same function either way."""

    net = STUNet(make_t2i(), TemporalConfig(down_levels=[0, 1]))
    assert net.time_major is None and KERNELS.time_major_min_pixels == 32 * 32
    seen = []
    net.temporal["in0_0"].register_forward_pre_hook(lambda m, args: seen.append(is_channels_last(args[0])))
    for side in (16, 32):
        net(torch.randn(1, 3, 4, side, side), torch.tensor([300.0]), cond(1))
    assert seen == [False, True]
    assert [net.uses_time_major(p) for p in (16 * 16, 31 * 33, 32 * 32, 64 * 64)] == [False, False, True, True]


@pytest.mark.parametrize("frames,kernel,stride", [(16, 3, 1), (16, 3, 2), (2, 3, 2), (3, 3, 1), (8, 5, 2),
                                                  (2, 5, 1), (5, 3, 2), (4, 1, 1)])
def test_time_conv_weight_grad_matches_torch(frames, kernel, stride):
    """The matmul weight gradient of the temporal conv equals torch's convolution backward, every tap and edge case
    (frames fewer than the kernel, odd counts at stride 2), and the whole function passes gradcheck."""
    x = torch.randn(2, frames, 6, 4, dtype=torch.double).permute(0, 3, 1, 2)     # (b c t s), time-major memory
    w, bias = torch.randn(5, 4, kernel, 1, dtype=torch.double), torch.randn(5, dtype=torch.double)
    pad = kernel // 2
    y = F.conv2d(x, w, bias, (stride, 1), (pad, 0))
    dy = torch.randn_like(y)
    want = torch.ops.aten.convolution_backward(dy, x, w, [5], [stride, 1], [pad, 0], [1, 1], False, [0, 0], 1,
                                               [False, True, False])[1]
    assert torch.allclose(time_conv_weight_grad(x, dy, kernel, stride, pad), want, atol=1e-12)
    inputs = tuple(v.clone().requires_grad_() for v in (x, w, bias))
    assert torch.autograd.gradcheck(lambda *t: _TimeConvFunction.apply(*t, stride, pad), inputs)


def _graph_names(fn) -> set:
    """Names of every node of an autograd graph."""
    names, todo = set(), [fn]
    while todo:
        node = todo.pop()
        if node is not None and node.name() not in names:
            names.add(node.name())
            todo.extend(n for n, _ in node.next_functions)
    return names


@pytest.mark.parametrize("stride", [1, 2])
def test_time_conv_takes_the_matmul_backward_on_time_major_memory_only(stride):
    """TimeConv's gradients are torch's on both layouts; only the time-major training path at stride 1 uses the
    matmul backward."""
    conv = TimeConv(8, stride=stride)
    x = torch.randn(2, 8, 6, 3, 5)
    grads = {}
    for name, xi in (("contiguous", x), ("time-major", x.contiguous(memory_format=torch.channels_last_3d))):
        xi = xi.clone().requires_grad_()
        y = conv(xi)
        assert ("_TimeConvFunctionBackward" in _graph_names(y.grad_fn)) == (name == "time-major" and stride == 1)
        assert is_channels_last(y) == (name == "time-major")
        grads[name] = torch.autograd.grad(y.square().sum(), (xi, conv.weight, conv.bias))
    for a, b in zip(grads["contiguous"], grads["time-major"]):
        assert torch.allclose(a, b, atol=1e-5)


def test_the_cpu_paths_are_chosen_in_one_place():
    """kernels.using switches a path for a block only, and the layer then runs torch's own kernel: the training
    step's graph shows which path ran; values agree either way."""
    conv, norm = TimeConv(8), GroupNorm(4, 8)
    x = torch.randn(2, 8, 4, 5, 6).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    names = {}
    outs = {}
    for on in (True, False):
        with using(time_conv_weight_grad=on, group_norm_backward=on):
            y = norm(conv(x))
            names[on] = _graph_names(y.grad_fn)
            outs[on] = y
    assert KERNELS.time_conv_weight_grad and KERNELS.group_norm_backward          # restored after the block
    assert "_TimeConvFunctionBackward" in names[True] and "_TimeConvFunctionBackward" not in names[False]
    assert "_ChannelsLastGroupNormBackward" in names[True] and "_ChannelsLastGroupNormBackward" not in names[False]
    torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=1e-5)
