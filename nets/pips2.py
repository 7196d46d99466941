"""The PIPs++ model: feature encoder, correlation windows, temporal delta block, Pips.

Architecture, state-dict names and forward semantics follow the original release, so its
checkpoints load strictly and give its numbers. Differences are in how, not what: the
correlation is read in windows (see ``nets/corr.py``), the encoder runs over frames in
chunks, everything runs on the inputs' device, and bad inputs raise ``ValueError``.
"""

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from nets.corr import CORR_IMPLS
from nets.precision import matmul_dtype

MIN_SIZE = 128  # the coarsest of 4 pyramid levels on the stride-8 map needs >= 2 pixels
# Frames per encoder pass and point tracks per delta-block pass. Without gradients, small
# chunks bound the activation memory; with gradients every activation is kept anyway, so
# GPUs take everything at once (big kernels) while CPUs keep cache-sized chunks.
ENCODER_CHUNK = {'cpu': 1, 'other': 4}
DELTA_CHUNK = {'cpu': 128, 'other': 1024}


def chunk_size(table, device):
    if device.type != 'cpu' and torch.is_grad_enabled():
        return 1 << 30
    return table['cpu' if device.type == 'cpu' else 'other']


class Conv1dPad(nn.Module):
    """Holds the weights of a Conv1d with kernel 3, stride 1 and one zero on each side.

    The delta block applies it with ``temporal_conv`` (one matrix product)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 3, padding=1)


class ResidualBlock1d(nn.Module):
    """Holds the two convolutions of a pre-activation 1-D residual block (see DeltaBlock)."""

    def __init__(self, in_channels, out_channels, is_first_block=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.is_first_block = is_first_block
        self.conv1 = Conv1dPad(in_channels, out_channels)
        self.conv2 = Conv1dPad(out_channels, out_channels)


def temporal_conv(x, weight, bias):
    """Kernel-3 Conv1d over time, zero-padded, as one matrix product.

    x: S,R,C_in (time-major, channels last; R tracks). weight: C_out,3*C_in (``gemm_weight``),
    bias: C_out. Row (s, r) of the stacked input is [x[s-1, r], x[s, r], x[s+1, r]] with zeros
    beyond the ends. Returns S,R,C_out.
    """
    S, R, C = x.shape
    taps = x.new_empty(S, R, 3, C, dtype=weight.dtype)  # written in three contiguous copies
    taps[1:, :, 0] = x[:-1]
    taps[:1, :, 0] = 0
    taps[:, :, 1] = x
    taps[:-1, :, 2] = x[1:]
    taps[-1:, :, 2] = 0
    out = torch.addmm(bias, taps.view(S * R, 3 * C), weight.t())
    return out.view(S, R, -1)


def gemm_weight(conv, dtype):
    """nn.Conv1d weight C_out,C_in,3 -> the C_out,3*C_in matrix of ``temporal_conv`` (tap-major
    rows), and the bias, in ``dtype``."""
    weight = conv.weight.to(dtype)
    return weight.transpose(1, 2).reshape(weight.shape[0], -1), conv.bias.to(dtype)


def instance_norm_relu(x, eps=1e-5):
    """ReLU of x normalised over time per track and channel. x: S,R,C.

    Seen as an S x (R*C) matrix, that is a batch norm of its columns (no affine, no running
    statistics): one fused kernel forwards and backwards."""
    out = F.batch_norm(x.view(x.shape[0], -1), None, None, training=True, eps=eps)
    return F.relu(out, inplace=True).view(x.shape)


class DeltaBlock(nn.Module):
    """1-D ResNet over time mapping per-frame [correlations, flow embedding] to updates.

    Every convolution runs as one matrix product over all (frame, track) rows of a chunk of
    tracks, on activations kept time-major and channels-last (S,R,C for R = B x tracks): no
    transposes between layers, and each instance norm is one batch norm of an S x (R*C) view.
    """

    def __init__(self, latent_dim=128, corr_levels=4, corr_radius=3, base_channels=128):
        super().__init__()
        self.latent_dim = latent_dim
        in_channels = 3 * corr_levels * (2 * corr_radius + 1) ** 2 + latent_dim + 2  # 718
        self.first_block_conv = Conv1dPad(in_channels, base_channels)
        widths = [base_channels * 2 ** (i // 2) for i in range(8)]  # 128,128,256,...,1024
        self.basicblock_list = nn.ModuleList(
            ResidualBlock1d(widths[max(i - 1, 0)], widths[i], is_first_block=(i == 0)) for i in range(8))
        self.dense = nn.Linear(widths[7], 2)

    def forward(self, fcorrs, flows):
        """fcorrs: B,S,N,588 correlations. flows: B,S,N,2 frame-to-frame motion.

        Returns the B,S,N,2 updates in float32 (or the weights' dtype, if wider). The
        products run in the autocast dtype where autocast is on; the weights are cast once.
        """
        dtype = matmul_dtype(fcorrs.device, self.dense.weight.dtype)
        convs = [gemm_weight(conv.conv, dtype) for conv in self._convs()]
        dense = (self.dense.weight.to(dtype), self.dense.bias.to(dtype))
        out_dtype = torch.promote_types(self.dense.weight.dtype, torch.float32)
        step = max(1, chunk_size(DELTA_CHUNK, fcorrs.device) // fcorrs.shape[0])
        deltas = [self._run_chunk(fcorrs[:, :, n:n + step], flows[:, :, n:n + step], convs, dense).to(out_dtype)
                  for n in range(0, fcorrs.shape[2], step)]
        return torch.cat(deltas, dim=2)

    def _convs(self):
        yield self.first_block_conv
        for block in self.basicblock_list:
            yield block.conv1
            yield block.conv2

    def _run_chunk(self, fcorr, flow, convs, dense):
        """fcorr: B,S,P,588, flow: B,S,P,2; convs: (weight, bias) in _convs order. Returns B,S,P,2."""
        B, S, P, _ = fcorr.shape
        x = torch.cat([fcorr.transpose(0, 1), flow_embedding(flow.transpose(0, 1), self.latent_dim)], dim=3)
        out = F.relu(temporal_conv(x.view(S, B * P, -1), *convs[0]), inplace=True)  # S,R,128
        for i, block in enumerate(self.basicblock_list):
            hidden = out if block.is_first_block else instance_norm_relu(out)
            hidden = temporal_conv(hidden, *convs[2 * i + 1])
            hidden = temporal_conv(instance_norm_relu(hidden), *convs[2 * i + 2])
            lo = (block.out_channels - block.in_channels) // 2  # a widening shortcut pads zeros
            hidden[..., lo:lo + block.in_channels] += out
            out = hidden
        return F.linear(F.relu(out), *dense).view(S, B, P, 2).transpose(0, 1)


def reference_delta_block(block, fcorrs, flows):
    """``block(fcorrs, flows)`` computed as nn.Conv1d layers over P,C,S sequences, in chunks
    of DELTA_CHUNK tracks: the formulation before the GEMM path, kept as the test oracle
    and the benchmarks' baseline."""
    B, S, N, _ = fcorrs.shape
    step = max(1, chunk_size(DELTA_CHUNK, fcorrs.device) // B)
    deltas = []
    for n in range(0, N, step):
        x = torch.cat([fcorrs[:, :, n:n + step], flow_embedding(flows[:, :, n:n + step], block.latent_dim)], dim=3)
        out = F.relu(block.first_block_conv.conv(x.permute(0, 2, 3, 1).flatten(0, 1)))  # P,128,S
        for res in block.basicblock_list:
            hidden = out if res.is_first_block else F.relu(F.instance_norm(out))
            hidden = res.conv2.conv(F.relu(F.instance_norm(res.conv1.conv(hidden))))
            extra = res.out_channels - res.in_channels
            out = hidden + F.pad(out, (0, 0, extra // 2, extra - extra // 2))
        delta = block.dense(F.relu(out).transpose(1, 2))  # P,S,2
        deltas.append(delta.view(B, -1, S, 2).transpose(1, 2))
    return torch.cat(deltas, dim=2)


def flow_embedding(flow, dim, temperature=10000):
    """[sin(x w), cos(x w), sin(y w), cos(y w)] for dim/4 frequencies w, then (x, y).

    flow: ...,2. Returns ...,dim+2. w_k = temperature ** (-k / (dim/4 - 1)).
    """
    n_freq = dim // 4
    omega = 1.0 / temperature ** (torch.arange(n_freq, device=flow.device) / (n_freq - 1))
    x = flow[..., 0:1] * omega  # ...,n_freq
    y = flow[..., 1:2] * omega
    emb = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=-1).to(flow.dtype)
    return torch.cat([emb, flow], dim=-1)


class ResidualBlock2d(nn.Module):
    """Two 3x3 convs with instance norm; a strided block projects its shortcut."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), nn.InstanceNorm2d(planes))

    def forward(self, x):
        y = F.relu(F.instance_norm(self.conv1(x)), inplace=True)
        y = F.relu(F.instance_norm(self.conv2(y)), inplace=True)
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y, inplace=True)


class BasicEncoder(nn.Module):
    """Multi-scale CNN: 4 residual stages resized to H/stride and fused to 128 channels."""

    def __init__(self, output_dim=128, stride=8):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 96, stride=2)
        self.layer3 = self._stage(96, 128, stride=2)
        self.layer4 = self._stage(128, 128, stride=2)
        self.conv2 = nn.Conv2d(64 + 96 + 128 + 128, output_dim * 2, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(output_dim * 2, output_dim, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    @staticmethod
    def _stage(in_planes, planes, stride):
        return nn.Sequential(ResidualBlock2d(in_planes, planes, stride), ResidualBlock2d(planes, planes))

    def forward(self, x):  # x: F,3,H,W in [-1,1] -> F,128,H/stride,W/stride
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = F.relu(F.instance_norm(self.conv1(x)), inplace=True)
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(F.interpolate(x, size, mode='bilinear', align_corners=True))
        x = F.relu(F.instance_norm(self.conv2(torch.cat(stages, dim=1))), inplace=True)
        return self.conv3(x)


def masked_error_sums(coord_predictions, trajs_g, valids):
    """Per iteration, the sum over valid entries of the |error| averaged over x and y.

    coord_predictions: list of B,S,N,2. trajs_g: B,S,N,2. valids: B,S,N. Returns I sums.
    """
    return torch.stack([((pred - trajs_g).abs().mean(dim=3) * valids).sum() for pred in coord_predictions])


def weigh_iterations(error_sums, valid_count, gamma=0.8):
    """Mean over iterations of the masked means error_sum / (1e-6 + valid_count), each
    weighted by gamma ** (I - i - 1) (later ones weigh more)."""
    n = len(error_sums)
    total = 0.0
    for i, error_sum in enumerate(error_sums):
        total = total + gamma ** (n - i - 1) * error_sum / (1e-6 + valid_count)
    return total / n


def sequence_loss(coord_predictions, trajs_g, valids, gamma=0.8):
    """The training loss: gamma-weighted masked L1 errors of the I per-iteration estimates.

    Each term is the |error| averaged over x and y, then sum(e*v) / (1e-6 + sum(v)).
    Data-parallel training sums error_sums and the count over processes first
    (training.step.data_parallel_loss).
    """
    return weigh_iterations(masked_error_sums(coord_predictions, trajs_g, valids), valids.sum(), gamma)


def check_inputs(trajs_e0, rgbs, feat_init=None):
    """Raise ValueError with a plain explanation when the inputs cannot be tracked."""
    if trajs_e0.dim() != 4 or trajs_e0.shape[-1] != 2:
        raise ValueError(f'trajs_e0 must have shape B,S,N,2 (pixel x, y); got {tuple(trajs_e0.shape)}')
    if rgbs.dim() != 5 or rgbs.shape[2] != 3:
        raise ValueError(f'rgbs must have shape B,S,3,H,W (RGB, 0..255); got {tuple(rgbs.shape)}')
    B, S, N, _ = trajs_e0.shape
    if rgbs.shape[:2] != (B, S):
        raise ValueError(f'rgbs has B,S = {tuple(rgbs.shape[:2])} but trajs_e0 has B,S = {(B, S)}')
    if S < 2:
        raise ValueError(f'need at least 2 frames to track; got S={S}')
    if N < 1:
        raise ValueError('need at least one point to track; got N=0')
    H, W = rgbs.shape[-2:]
    if H < MIN_SIZE or W < MIN_SIZE:
        raise ValueError(f'frames must be at least {MIN_SIZE}x{MIN_SIZE} pixels; got {H}x{W} '
                         '(resize or pad the video first)')
    if not torch.isfinite(trajs_e0).all():
        raise ValueError('trajs_e0 contains NaN or infinite coordinates')
    if feat_init is not None:
        if len(feat_init) != 3:
            raise ValueError('feat_init must be the (feats1, feats2, feats4) triple a previous call returned')
        for feats in feat_init:
            if tuple(feats.shape[:3]) != (B, S, N):
                raise ValueError(f'feat_init tensors must have shape B,S,N,C with B,S,N = {(B, S, N)}; '
                                 f'got {tuple(feats.shape)}')


class Refinement(NamedTuple):
    """What ``Pips.refine`` returns (pixel coordinates; B,S,N,2 each)."""

    preds: list  # iters estimates, one per iteration
    preds_anim: list  # iters+2: the input, each iteration with frame 0 locked, the final again
    feats: tuple  # (feats1, feats2, feats4) B,S,N,128 each: the targets, to pass on as feat_init

    @property
    def tracks(self):
        """B,S,N,2: the final estimates, frame 0 locked to the query."""
        return self.preds_anim[-1]


class Pips(nn.Module):
    """PIPs++ point tracker.

    ``corr_impl`` picks the correlation lookup: 'windowed' (default, memory-light) or
    'full' (the original's full cost volume; same numbers, kept as an oracle).
    """

    def __init__(self, stride=8, corr_impl='windowed'):
        super().__init__()
        if corr_impl not in CORR_IMPLS:
            raise ValueError(f"corr_impl must be one of {sorted(CORR_IMPLS)}; got {corr_impl!r}")
        self.stride = stride
        self.latent_dim = 128
        self.corr_levels = 4
        self.corr_radius = 3
        self.corr_impl = corr_impl
        self.fnet = BasicEncoder(output_dim=self.latent_dim, stride=stride)
        self.delta_block = DeltaBlock(self.latent_dim, self.corr_levels, self.corr_radius)
        self.norm = nn.GroupNorm(1, self.latent_dim)  # unused; kept so checkpoints load strictly

    def encode(self, rgbs):
        """rgbs: B,S,3,H,W in 0..255 -> feature maps B,S,128,H/stride,W/stride."""
        B, S, C, H, W = rgbs.shape
        frames = rgbs.reshape(B * S, C, H, W)
        dtype = self.fnet.conv1.weight.dtype
        step = chunk_size(ENCODER_CHUNK, frames.device)
        if step >= B * S:  # one pass (and a plain graph for autograd)
            fmaps = self.fnet(2 * (frames.to(dtype) / 255.0) - 1)
        else:  # chunks written into one tensor, so the features exist once
            fmaps = None
            for start in range(0, B * S, step):
                out = self.fnet(2 * (frames[start:start + step].to(dtype) / 255.0) - 1)
                if fmaps is None:
                    fmaps = out.new_empty(B * S, *out.shape[1:])
                fmaps[start:start + step] = out
        return fmaps.reshape(B, S, self.latent_dim, H // self.stride, W // self.stride)

    def forward(self, trajs_e0, rgbs, iters=3, trajs_g=None, vis_g=None, valids=None, sw=None,
                feat_init=None, is_train=False, beautify=False):
        """Refine the trajectories ``trajs_e0`` (B,S,N,2 pixels) on frames ``rgbs`` (B,S,3,H,W).

        Returns (coord_predictions1, coord_predictions2, (feats1, feats2, feats4), loss):
        the per-iteration estimates plus the final one again (iters+1 lists of B,S,N,2),
        the same with frame 0 locked, preceded by the input and followed by the final
        again (iters+2), the target features (B,S,N,128 each) to pass on as ``feat_init``,
        and the loss when ``trajs_g`` is given (else None). ``vis_g``, ``sw`` and
        ``is_train`` are accepted for compatibility; none changes the result.
        """
        check_inputs(trajs_e0, rgbs, feat_init)
        corr = self.correlation(self.encode(rgbs))
        coord_predictions1, coord_predictions2, feats = self.refine(trajs_e0, corr, iters=iters,
                                                                    feat_init=feat_init, beautify=beautify)
        loss = None
        if trajs_g is not None:
            if valids is None:
                valids = torch.ones_like(trajs_g[..., 0])
            loss = sequence_loss(coord_predictions1, trajs_g, valids)
        coord_predictions1.append(coord_predictions2[-1])
        return coord_predictions1, coord_predictions2, feats, loss

    def correlation(self, fmaps):
        """The correlation lookup over feature maps B,S,128,H/stride,W/stride (from ``encode``)."""
        return CORR_IMPLS[self.corr_impl](fmaps, self.corr_levels, self.corr_radius)

    def refine(self, trajs_e0, corr, iters=3, feat_init=None, beautify=False):
        """The iterative refinement of ``forward`` on a prebuilt ``correlation``.

        Lets a caller encode each frame once and refine many groups or chunks of points on
        the same features. Returns a ``Refinement``: ``forward``'s first list without its
        final repeat, its second list, and the target features.
        """
        B, S, N, _ = trajs_e0.shape
        frames = torch.arange(S, device=trajs_e0.device)
        frames_back2 = (frames - 2).clamp(min=0)
        frames_back4 = (frames - 4).clamp(min=0)

        coords_init = trajs_e0.to(self.fnet.conv1.weight.dtype) / self.stride
        coords = coords_init.clone()
        if feat_init is None:
            feat1 = corr.sample(frames[:1], coords_init[:, :1])  # B,1,N,C
            feats1 = feats2 = feats4 = feat1.expand(B, S, N, self.latent_dim)
        else:
            feats1, feats2, feats4 = feat_init

        coord_predictions1 = []
        coord_predictions2 = [coords_init * self.stride]
        for itr in range(iters):
            coords = coords.detach()
            if itr >= 1:  # targets from 2 and 4 frames back, at the current estimates
                feats2 = corr.sample(frames_back2, coords[:, frames_back2])
                feats4 = corr.sample(frames_back4, coords[:, frames_back4])
            targets = torch.stack([feats1, feats2, feats4], dim=3)  # B,S,N,3,C
            fcorrs = corr.lookup(targets, coords).reshape(B, S, N, -1)  # B,S,N,588
            flows = coords[:, 1:] - coords[:, :-1]
            flows = torch.cat([flows, flows[:, -1:]], dim=1)  # B,S,N,2

            delta = self.delta_block(fcorrs, flows)  # B,S,N,2
            if beautify and itr > 3 * iters // 4:
                delta = delta * 0.5
            coords = coords + delta
            coord_predictions1.append(coords * self.stride)
            coords = torch.cat([coords_init[:, :1], coords[:, 1:]], dim=1)  # frame 0 stays the query
            coord_predictions2.append(coords * self.stride)
        coord_predictions2.append(coords * self.stride)
        return Refinement(coord_predictions1, coord_predictions2, (feats1, feats2, feats4))
