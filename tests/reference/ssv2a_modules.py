"""SSV2A's own modules, re-built from /work/shared/spec/ssv2a.md §2-3 (the official repo
wguo86/SSV2A @ 7f01d5f is not pip-installable). Class names, attribute names and module order
follow the official ones so that state_dict() keys are exactly those of ssv2a.pth / agg.pth.

Only the configurations SSV2A runs are built (arch "mlp" manifold/generator, arch "transformer"
variational Styler, guidance "manifold"). Differences from the official code, on purpose:
  * every `sample`/`fold` method takes optional injected noise `eps` [N, *mu.shape] instead of
    drawing it from torch's global RNG (the arithmetic is the official one: acc += (eps_i·std + mu)/N);
  * Cycle Mix takes injected noise and slot permutations, and uses the configured clap_dim where
    the official code hard-codes 512 (torch.empty(B, 512));
  * the Aggregator's dropout can be driven by injected keep-masks, to golden the official
    train-mode inference (video_to_audio never calls .eval() on it).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------------------ primitives

def sample_normal(mu, log_sigma, eps):
    """One draw of N(mu, exp(log_sigma)) ("sigma" heads are log-variances)."""
    std = torch.exp(0.5 * log_sigma)
    return eps.mul(std) + mu


def average_of_samples(mu, log_sigma, eps):
    """The official 'average of N samples': acc = 0; for i: acc += sample_i / N."""
    n = eps.shape[0]
    acc = torch.zeros(mu.shape)
    for i in range(n):
        acc += sample_normal(mu, log_sigma, eps[i]) / n
    return acc


class PositionalEmbedding(nn.Module):
    """pe[p, 2i] = sin(p / (2R)^(2i/E)), pe[p, 2i+1] = cos(...); buffer 'pe' is [R, 1, E]."""

    def __init__(self, embed_dims, resolution=1024, inject_method="cat"):
        super().__init__()
        self.inject_method = inject_method
        self.resolution = resolution
        pos = torch.arange(resolution, dtype=torch.float).unsqueeze(1)
        freq = torch.exp(torch.arange(0, embed_dims, 2).float() * (-math.log(2 * resolution) / embed_dims))
        table = torch.zeros(resolution, embed_dims)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("pe", table.unsqueeze(0).transpose(0, 1))

    def forward(self, x):
        add = self.pe[: x.shape[1]].squeeze().tile(x.shape[0], 1, 1)
        return x + add if self.inject_method == "add" else torch.cat([x, add], dim=-1)


class EfficientSelfAttention(nn.Module):
    """Softmax of q and k over the per-head FEATURE axis, context C = k̂ᵀv per head, no 1/√d,
    learned highway on the un-normalised input, no output projection."""

    def __init__(self, embed_dim, nhead, dropout):
        super().__init__()
        self.nhead = nhead
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.norm = nn.LayerNorm(embed_dim)
        self.highway = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, record=None, context_mask=None):
        b, t, d = x.shape
        h = self.nhead
        n = self.norm(x)
        q = F.softmax(self.query(n).view(b, t, h, -1), dim=-1)
        k = F.softmax(self.key(n).view(b, t, h, -1), dim=-1)
        v = self.value(n).view(b, t, h, -1)
        ctx = torch.einsum("bnhd,bnhl->bhdl", k, v)
        ctx = ctx * context_mask if context_mask is not None else self.dropout(ctx)
        a = torch.einsum("bnhd,bhdl->bnhl", q, ctx).reshape(b, t, d)
        y = self.highway(x) + a
        if record is not None:
            record("norm", n)
            record("q_softmax", q.reshape(b, t, d))
            record("k_softmax", k.reshape(b, t, d))
            record("v", v.reshape(b, t, d))
            record("context", ctx)
            record("attn", a)
            record("out", y)
        return y


class FFN(nn.Module):
    def __init__(self, embed_dim, hidden_dim, dropout):
        super().__init__()
        self.linear1 = nn.Linear(embed_dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, embed_dim)  # zero-initialised upstream; random here
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(p=dropout)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x, record=None, mask=None):
        hdn = self.activation(self.linear1(self.norm(x)))
        hdn = hdn * mask if mask is not None else self.dropout(hdn)
        y = x + self.linear2(hdn)
        if record is not None:
            record("out", y)
        return y


class ESALayer(nn.Module):
    def __init__(self, embed_dim, ffn_dim, nhead, dropout):
        super().__init__()
        self.esa = EfficientSelfAttention(embed_dim, nhead, dropout)
        self.ffn = FFN(embed_dim, ffn_dim, dropout)

    def forward(self, x, record=None, masks=None):
        masks = masks or {}
        sub = (lambda p: (lambda n, t: record(f"{p}.{n}", t))) if record is not None else (lambda p: None)
        y = self.esa(x, sub("esa"), masks.get("context"))
        return self.ffn(y, sub("ffn"), masks.get("ffn"))


class TransEncoder(nn.Module):
    def __init__(self, num_layers=3, embed_dim=512, nhead=8, dropout=0.2, exp_rate=1, **_):
        super().__init__()
        self.encoder = nn.Sequential()
        for _i in range(num_layers):
            self.encoder.append(ESALayer(embed_dim, embed_dim * exp_rate, nhead, dropout))

    def forward(self, x, record=None, masks=None):
        for i, layer in enumerate(self.encoder):
            sub = (lambda n, t, i=i: record(f"encoder.{i}.{n}", t)) if record is not None else None
            x = layer(x, sub, (masks or {}).get(i))
        return x


class ResWrapper(nn.Module):
    def __init__(self, mod, proj):
        super().__init__()
        self.mod = mod
        self.proj = proj

    def forward(self, x):
        return self.proj(x) + self.mod(x)


class MLP(nn.Module):
    """Residual blocks over layer triples (a, b, c), then Linear→LN→(Dropout)→GELU pairs.

    Dropout modules exist only when dropout is non-zero, which shifts the Sequential indices:
    the tiny configs keep dropout 0.2 so the keys match the released checkpoints.
    """

    def __init__(self, layers, resnet=False, dropout=0.1, **_):
        super().__init__()
        resnet = resnet and len(layers) > 2
        self.model = nn.Sequential()
        start = 0
        if resnet:
            for i in range((len(layers) - 1) // 2):
                a, b, c = layers[2 * i], layers[2 * i + 1], layers[2 * i + 2]
                branch = nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b))
                if dropout:
                    branch.append(nn.Dropout(p=dropout))
                branch.append(nn.GELU())
                branch.append(nn.Linear(b, c))
                branch.append(nn.LayerNorm(c))
                if dropout:
                    branch.append(nn.Dropout(p=dropout))
                self.model.append(ResWrapper(branch, nn.Linear(a, c)))
                self.model.append(nn.GELU())
                start = 2 * i + 2
        for i in range(start, len(layers) - 1):
            self.model.append(nn.Linear(layers[i], layers[i + 1]))
            self.model.append(nn.LayerNorm(layers[i + 1]))
            if dropout:
                self.model.append(nn.Dropout(p=dropout))
            self.model.append(nn.GELU())

    def forward(self, x, record=None, mask_after_ln=None):
        for i, m in enumerate(self.model):
            if mask_after_ln is not None and isinstance(m, nn.Dropout):
                x = x * mask_after_ln
            else:
                x = m(x)
            if record is not None and isinstance(m, (ResWrapper, nn.GELU)):
                record(f"model.{i}", x)
        return x


# ------------------------------------------------------------------------------ ssv2a.pth parts

class ManifoldEncoder(nn.Module):
    """arch 'mlp', variational: Linear(in, layers[0], bias=False) → MLP → mu / logvar heads."""

    def __init__(self, in_dim, manifold_dim, manifold):
        super().__init__()
        self.model = nn.Sequential()
        self.model.append(nn.Linear(in_dim, manifold["layers"][0], bias=False))
        self.model.append(MLP(**manifold))
        hidden = manifold["layers"][-1]
        self.out_mu = nn.Linear(hidden, manifold_dim)
        self.out_sigma = nn.Linear(hidden, manifold_dim)

    def forward(self, x, record=None):
        h = self.model[0](x)
        if record is not None:
            record("model.0", h)
        h = self.model[1](h, (lambda n, t: record(f"model.1.{n}", t)) if record is not None else None)
        return self.out_mu(h), self.out_sigma(h)


class Manifold(nn.Module):
    def __init__(self, clip_dim, clap_dim, manifold_dim, manifold, **_):
        super().__init__()
        self.clip_encoder = ManifoldEncoder(clip_dim, manifold_dim, manifold)
        self.clap_encoder = ManifoldEncoder(clap_dim, manifold_dim, manifold)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.self_logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def fold_clips(self, clips, eps):
        mu, logvar = self.clip_encoder(clips)
        return average_of_samples(mu, logvar, eps)

    def fold_claps(self, claps, eps):
        mu, logvar = self.clap_encoder(claps)
        return average_of_samples(mu, logvar, eps)


class Generator(nn.Module):
    """arch 'mlp', variational: Linear(manifold_dim, layers[0]) (with bias) → MLP → mu / logvar."""

    def __init__(self, clap_dim, manifold_dim, generator, **_):
        super().__init__()
        self.model = nn.Sequential()
        self.model.append(nn.Linear(manifold_dim, generator["layers"][0]))
        self.model.append(MLP(**generator))
        hidden = generator["layers"][-1]
        self.out_mu = nn.Linear(hidden, clap_dim)
        self.out_sigma = nn.Linear(hidden, clap_dim)

    def forward(self, x, record=None):
        h = self.model[0](x)
        if record is not None:
            record("model.0", h)
        h = self.model[1](h, (lambda n, t: record(f"model.1.{n}", t)) if record is not None else None)
        return self.out_mu(h), self.out_sigma(h)

    def fold2claps(self, folds, eps):
        mu, logvar = self.forward(folds)
        gen = average_of_samples(mu, logvar, eps)
        return gen / gen.norm(p=2, dim=-1, keepdim=True)


class Styler(nn.Module):
    def __init__(self, styler, slot, clap_dim, clip_dim, manifold_dim):
        super().__init__()
        self.slot = slot
        e = styler["embed_dim"]
        self.in_proj = nn.Linear(manifold_dim + clip_dim, e)
        self.style_encoder = TransEncoder(**styler)
        self.pred_token = nn.Parameter(torch.zeros(2, e))
        self.head_mu = MLP(layers=[e] * 2, dropout=styler["dropout"])
        self.head_sigma = MLP(layers=[e] * 2, dropout=styler["dropout"])
        self.out_mu = nn.Linear(e, clap_dim)
        self.out_sigma = nn.Linear(e, clap_dim)

    def forward(self, src, clips, record=None):
        h = self.in_proj(torch.cat([src, clips], dim=-1))
        if record is not None:
            record("in_proj", h)
        h = torch.cat([torch.tile(self.pred_token, (h.shape[0], 1, 1)), h], dim=1)
        if record is not None:
            record("tokens", h)
        h = self.style_encoder(h, (lambda n, t: record(f"style_encoder.{n}", t)) if record is not None else None)
        hm = self.head_mu(h[:, 0, :])
        hs = self.head_sigma(h[:, 1, :])
        if record is not None:
            record("head_mu", hm)
            record("head_sigma", hs)
        return self.out_mu(hm), self.out_sigma(hs)

    def sample(self, src, clips, eps):
        mu, logvar = self.forward(src, clips)
        return average_of_samples(mu, logvar, eps)


class Remixer(nn.Module):
    def __init__(self, remixer, clip_dim, clap_dim, manifold_dim, **_):
        super().__init__()
        assert remixer["guidance"] == "manifold"
        self.slot = remixer["slot"]
        self.styler = Styler(remixer["styler"], self.slot, clap_dim, clip_dim, manifold_dim)

    def sample(self, src, clips, eps, perm=None, normalize=True):
        if perm is not None:  # official: idx = random.sample(range(slot), slot)
            src = src[:, perm, :]
            clips = clips[:, perm, :]
        clap = self.styler.sample(src, clips, eps)
        if normalize:
            clap = clap / clap.norm(p=2, dim=-1, keepdim=True)
        return clap


class Pipeline(nn.Module):
    """Holds the three ssv2a.pth parts; save() writes the official checkpoint dict."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.clap_dim = config["clap_dim"]
        self.manifold = Manifold(**config)
        self.generator = Generator(**config)
        self.remixer = Remixer(**config)

    def checkpoint(self, timestamp="20261126-000000"):
        return {"timestamp": timestamp,
                "manifold_state": self.manifold.state_dict(),
                "generator_state": self.generator.state_dict(),
                "remixer_state": self.remixer.state_dict()}

    @torch.no_grad()
    def cycle_mix(self, clips, noise, fixed_src=None, its=1, samples=16, record=None):
        """Pipeline.cycle_mix (pipeline.py:107-155) with injected noise:
        noise["fold_clips"] [N,B,slot,M]; noise["gen"] [R,N,B,slot,C]; noise["fold_claps"] [R,N,B,M]
        (round 0 unused); noise["remix"] [R,S,N,B,C]; noise["perm"] [R,S,slot] long or None."""
        b = clips.shape[0]
        rt_claps = torch.zeros(b, self.clap_dim)  # official: torch.empty(B, 512)
        rt_scores = torch.ones(b)
        src = self.manifold.fold_clips(clips, noise["fold_clips"])
        if record is not None:
            record("src", src)
        for i in range(its + 1):
            if fixed_src is not None:
                zero_slots = torch.sum(clips.bool(), dim=-1).bool().logical_not()
                src[zero_slots, ...] = fixed_src[zero_slots, ...]
            src_claps = self.generator.fold2claps(src, noise["gen"][i])
            src_claps[:, 0, :] = 0
            if i > 0:
                src[:, 0, :] = self.manifold.fold_claps(rt_claps, noise["fold_claps"][i])
            remix = torch.zeros(b, samples, self.clap_dim)
            for j in range(samples):
                perm = None if noise.get("perm") is None else noise["perm"][i, j]
                remix[:, j, :] = self.remixer.sample(src, clips, noise["remix"][i, j], perm=perm)
            score = torch.einsum("bmi,bni->bmn", remix, src_claps)
            score /= (torch.einsum("bmi,bni->bmn", remix.norm(dim=-1, keepdim=True),
                                   src_claps.norm(dim=-1, keepdim=True)) + 1e-6)
            score = torch.std(score, dim=-1)
            best = torch.argmin(score, dim=-1)
            best_score = score[torch.arange(b), best]
            updates = best_score < rt_scores
            rt_scores[updates] = best_score[updates]
            best_claps = remix[torch.arange(b), best]
            rt_claps[updates] = best_claps[updates]
            if record is not None:
                record(f"round{i}.src", src.clone())
                record(f"round{i}.src_claps", src_claps)
                record(f"round{i}.remix", remix)
                record(f"round{i}.score", score)
                record(f"round{i}.best", best.float())
                record(f"round{i}.rt_claps", rt_claps.clone())
        return rt_claps


# ------------------------------------------------------------------------------ agg.pth

class Aggregator(nn.Module):
    """Temporal aggregation (aggregator.py:16-49); the official one hard-codes emb_dim 512."""

    def __init__(self, emb_dim=512, nhead=8, exp_rate=2, resolution=1024, dropout=0.2):
        super().__init__()
        self.pe = PositionalEmbedding(emb_dim, resolution=resolution, inject_method="add")
        self.encoder = TransEncoder(num_layers=1, embed_dim=emb_dim, nhead=nhead, dropout=dropout,
                                    exp_rate=exp_rate)
        self.pred_token = nn.Parameter(torch.zeros(2, emb_dim))
        self.head_mu = MLP(layers=[emb_dim] * 2, dropout=dropout)
        self.head_sigma = MLP(layers=[emb_dim] * 2, dropout=dropout)
        self.out_mu = nn.Linear(emb_dim, emb_dim)
        self.out_sigma = nn.Linear(emb_dim, emb_dim)

    def forward(self, x, record=None, masks=None):
        """masks (train-mode dropout, already scaled by 1/(1-p)): {"context", "ffn", "head_mu",
        "head_sigma"}; None = eval mode."""
        masks = masks or {}
        x = torch.cat([torch.tile(self.pred_token, (x.shape[0], 1, 1)), x], dim=1)
        if record is not None:
            record("tokens", x)
        x = self.pe(x)
        if record is not None:
            record("pe", x)
        enc_masks = {0: {"context": masks.get("context"), "ffn": masks.get("ffn")}} if masks else None
        x = self.encoder(x, (lambda n, t: record(f"encoder.{n}", t)) if record is not None else None, enc_masks)
        hm = self.head_mu(x[:, 0, :], mask_after_ln=masks.get("head_mu"))
        hs = self.head_sigma(x[:, 1, :], mask_after_ln=masks.get("head_sigma"))
        if record is not None:
            record("head_mu", hm)
            record("head_sigma", hs)
        return self.out_mu(hm), self.out_sigma(hs)

    def sample(self, x, eps, masks=None):
        mu, logvar = self.forward(x, masks=masks)
        clap = average_of_samples(mu, logvar, eps)
        return clap / clap.norm(p=2, dim=-1, keepdim=True)
