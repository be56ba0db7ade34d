"""Golden fixtures for the AudioLDM path (issues 3 and 4), built from audioldm==0.1.1's own code.

One tiny `audioldm.ldm.LatentDiffusion` (UNet + VAE + HiFi-GAN, seeded random weights) is built
the way AudioLDM builds audioldm-s-full-v2, only smaller, and every fixture below uses it:

  audioldm_vae          latent -> (1/scale_factor)·latent -> post_quant_conv -> VAE decoder -> mel
  audioldm_hifigan      mel -> HiFi-GAN (weight norm already removed: the layout AudioLDM's ckpt has)
  audioldm_hifigan_wn   a second, smaller HiFi-GAN that still stores weight_g / weight_v
  audioldm_decode_tail  latent -> clamp rule -> VAE -> HiFi-GAN (generate_sample's tail), weights
                        of audioldm_vae + audioldm_hifigan
  audioldm_unet         UNet (film conditioning by concat) with per-block intermediates
  audioldm_ddim         DDIMSampler steps (200-step schedule) and a 5-step CFG run of the tiny UNet
                        (weights of audioldm_unet), decoded to a waveform
  audioldm_dpmsolver    diffusers DPMSolverMultistepScheduler (DPM-Solver++ 2M) on given eps
  ckpt/audioldm_tiny.ckpt   the Lightning-style checkpoint (zip torch.save of {"state_dict": ...})
  audioldm_m_like       a second size no release has (other widths, depths, latent channels,
                        vocoder kernels, noise schedule): UNet eps, VAE mel, HiFi-GAN waveform;
                        weights only in ckpt/audioldm_m_like.ckpt (with hyper_parameters), which
                        the tests convert without --config

Run: /root/.venvs/ref/bin/python tests/reference/make_audioldm.py [m_like]   (m_like: only that one)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SCRIPT = "make_audioldm.py"
VERSION = "v1"
SEED = 20261126
LIBS = ("audioldm", "diffusers")

C.audioldm_submodules()
import audioldm.latent_diffusion.ddim as ddim_mod  # noqa: E402
from audioldm.hifigan import AttrDict  # noqa: E402
from audioldm.hifigan.models import Generator  # noqa: E402
from audioldm.latent_diffusion.ddim import DDIMSampler  # noqa: E402
from audioldm.latent_diffusion.util import timestep_embedding  # noqa: E402
from audioldm.ldm import LatentDiffusion  # noqa: E402

# --------------------------------------------------------------------------------------
# Tiny configs, in AudioLDM's own config key names
# --------------------------------------------------------------------------------------

# UNet: the s-full-v2 structure (film by concat, spatial transformers with no context, legacy
# heads), with 2 levels. model_channels stays 32 because every GroupNorm has 32 groups.
# num_head_channels 16 -> 2 heads of 16 at 32 channels, so the head split is exercised.
# extra_film_condition_dim 64 instead of 512 to fit the 2 MB budget (only film_emb's width).
UNET = {
    "image_size": 64,
    "extra_film_condition_dim": 64,
    "extra_film_use_concat": True,
    "in_channels": 8,
    "out_channels": 8,
    "model_channels": 32,
    "attention_resolutions": [2],
    "num_res_blocks": 1,
    "channel_mult": [1, 1],
    "num_head_channels": 16,
    "use_spatial_transformer": True,
}
# VAE: ch_mult [2, 1] puts 64 channels (2 per GroupNorm group) at level 0 and a channel change
# (nin_shortcut 32 -> 64) in up.0; 2 levels = one ×2 upsample (the real one has 3 levels, ×4).
DDCONFIG = {
    "double_z": True,
    "z_channels": 8,
    "resolution": 256,
    "downsample_time": False,
    "in_channels": 1,
    "out_ch": 1,
    "ch": 32,
    "ch_mult": [2, 1],
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "dropout": 0.0,
}
FIRST_STAGE = {
    "target": "audioldm.variational_autoencoder.autoencoder.AutoencoderKL",
    "params": {"monitor": "val/rec_loss", "image_key": "fbank", "subband": 1, "embed_dim": 8,
               "time_shuffle": 1, "ddconfig": DDCONFIG},
}
# HiFi-GAN: the real upsampling pattern (hop 160, 160·F + 32 samples), narrow channels
# (48 -> 24, 12, 6, 3, 1), 16 mels (= the tiny VAE's output bins, so the decode tail chains).
HIFIGAN = {
    "resblock": "1",
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "upsample_initial_channel": 48,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_mels": 16,
    "sampling_rate": 16000,
    "hop_size": 160,
}
HIFIGAN_WN = {
    "resblock": "1",
    "upsample_rates": [4, 2],
    "upsample_kernel_sizes": [8, 4],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_mels": 16,
}
SCALE_FACTOR = 0.7310585975646973  # not the real 0.93929...: a hard-coded value must fail
LDM = {
    "linear_start": 0.0015,
    "linear_end": 0.0195,
    "num_timesteps_cond": 1,
    "log_every_t": 200,
    "timesteps": 1000,
    "first_stage_key": "fbank",
    "cond_stage_key": "waveform",
    "latent_t_size": 4,
    "latent_f_size": 8,
    "channels": 8,
    "cond_stage_trainable": True,
    "conditioning_key": "film",
    "monitor": "val/loss_simple_ema",
    "scale_by_std": True,
}

DDIM_STEPS_FULL = 200
DDIM_ETA = 1.0
CFG_SCALE = 2.5


class CpuDDIMSampler(DDIMSampler):
    """audioldm's DDIMSampler.register_buffer moves every tensor to CUDA; keep them on the CPU."""

    def register_buffer(self, name, attr):
        setattr(self, name, attr)


# sample_log() builds `DDIMSampler(self)` itself: point the module-level name at the CPU variant.
import audioldm.ldm as ldm_mod  # noqa: E402

ldm_mod.DDIMSampler = CpuDDIMSampler


class NoiseQueue:
    """Replaces ddim.noise_like: hands out the stored per-step noise in order."""

    def __init__(self, noises):
        self.noises = list(noises)

    def __call__(self, shape, device, repeat=False):
        assert not repeat
        z = self.noises.pop(0)
        assert tuple(z.shape) == tuple(shape), (z.shape, shape)
        return z.clone()


def build_ldm(gen: torch.Generator) -> LatentDiffusion:
    ldm = LatentDiffusion(
        device="cpu",
        first_stage_config=FIRST_STAGE,
        cond_stage_config={"target": "torch.nn.Identity", "params": {}},
        scale_factor=SCALE_FACTOR,
        unet_config={"target": "audioldm.latent_diffusion.openaimodel.UNetModel", "params": UNET},
        base_learning_rate=5e-06,
        **LDM,
    )
    # AutoencoderKL always builds the full-size 16 kHz vocoder (get_vocoder ignores its config);
    # swap in the tiny one, prepared exactly as get_vocoder prepares it.
    voc = Generator(AttrDict(HIFIGAN))
    voc.eval()
    voc.remove_weight_norm()
    ldm.first_stage_model.vocoder = voc
    ldm.eval()
    with torch.no_grad():
        ldm.scale_factor.fill_(SCALE_FACTOR)
        # EMA weights (the ones the official sampling runs with) ...
        C.randomize(ldm.model, gen)
        for name, p in ldm.model.named_parameters():
            getattr(ldm.model_ema, ldm.model_ema.m_name2s_name[name]).copy_(p)
        ldm.model_ema.num_updates.fill_(12345)
        # ... and different "training" weights in model.diffusion_model.*
        C.randomize(ldm.model, gen)
        C.randomize(ldm.first_stage_model, gen)
        quiet_post(ldm.first_stage_model.vocoder, 0.5)
    return ldm


def quiet_post(voc, gain):
    """Scale conv_post so tanh is not saturated by the random weights (keeps the test sensitive)."""
    with torch.no_grad():
        w = voc.conv_post.weight_g if hasattr(voc.conv_post, "weight_g") else voc.conv_post.weight
        w.mul_(gain)
        voc.conv_post.bias.mul_(gain)


def unet_state(ldm) -> dict:
    """model.diffusion_model.* as the converter should produce it from the ckpt: EMA values."""
    sd = {}
    for name, p in ldm.model.named_parameters():
        sd[f"model.{name}"] = getattr(ldm.model_ema, ldm.model_ema.m_name2s_name[name]).clone()
    return sd


def smooth_mel(gen, shape):
    """Log-mel-like input: N(-4.63, 2.74) smoothed along time (AudioLDM's dataset mean/std)."""
    x = torch.randn(shape, generator=gen)
    x = F.avg_pool2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), (3, 1), stride=1) * 1.6
    return x * 2.74 - 4.63


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------

def vae_decode_traced(ldm, z, record):
    """decode_first_stage(z) with intermediates; asserts equality with the real call."""
    fs = ldm.first_stage_model
    dec = fs.decoder
    s = (1.0 / ldm.scale_factor) * z                       # ldm.decode_first_stage: z = 1/s * z
    record("scaled_latent", s)
    h = fs.post_quant_conv(s)
    record("post_quant_conv", h)
    h = dec.conv_in(h)
    record("decoder.conv_in", h)
    h = dec.mid.block_1(h, None)
    record("decoder.mid.block_1", h)
    h = dec.mid.attn_1(h)
    record("decoder.mid.attn_1", h)
    h = dec.mid.block_2(h, None)
    record("decoder.mid.block_2", h)
    for i_level in reversed(range(dec.num_resolutions)):
        for i_block in range(dec.num_res_blocks + 1):
            h = dec.up[i_level].block[i_block](h, None)
            record(f"decoder.up.{i_level}.block.{i_block}", h)
            assert len(dec.up[i_level].attn) == 0
        if i_level != 0:
            h = dec.up[i_level].upsample(h)
            record(f"decoder.up.{i_level}.upsample", h)
    h = dec.norm_out(h)
    h = h * torch.sigmoid(h)                                # nonlinearity() = swish
    record("decoder.norm_out_silu", h)
    h = dec.conv_out(h)
    ref = ldm.decode_first_stage(z)
    assert torch.equal(h, ref), (h - ref).abs().max()
    return ref


def hifigan_traced(voc, mel_bft, record):
    """Generator.forward with intermediates; asserts equality with the real call."""
    x = voc.conv_pre(mel_bft)
    record("conv_pre", x)
    for i in range(voc.num_upsamples):
        x = F.leaky_relu(x, 0.1)
        x = voc.ups[i](x)
        record(f"ups.{i}", x)
        xs = None
        for j in range(voc.num_kernels):
            if xs is None:
                xs = voc.resblocks[i * voc.num_kernels + j](x)
            else:
                xs += voc.resblocks[i * voc.num_kernels + j](x)
        x = xs / voc.num_kernels
        record(f"mrf.{i}", x)
    x = F.leaky_relu(x)                                     # default slope 0.01
    x = voc.conv_post(x)
    record("conv_post", x)
    x = torch.tanh(x)
    ref = voc(mel_bft)
    assert torch.equal(x, ref), (x - ref).abs().max()
    return ref


def make_vae(ldm, gen):
    fx = C.Fixture("audioldm_vae", SCRIPT, VERSION, SEED,
                   "AudioLDM VAE decode path: mel = first_stage_model.decode((1/scale_factor)*latent) "
                   "(audioldm.ldm.LatentDiffusion.decode_first_stage). Note: the code multiplies by "
                   "1/scale_factor (computed in f32), it does not divide.",
                   {"first_stage_config": FIRST_STAGE, "scale_factor": SCALE_FACTOR}, LIBS)
    sd = ldm.state_dict()
    keep = {k: v for k, v in sd.items()
            if k.startswith("first_stage_model.decoder.") or k.startswith("first_stage_model.post_quant_conv.")
            or k.startswith("first_stage_model.quant_conv.") or k == "scale_factor"}
    fx.state(keep)
    z = torch.randn(2, 8, 6, 8, generator=gen) * 1.3
    fx.input("latent", z)
    with torch.no_grad():
        mel = vae_decode_traced(ldm, z, fx.intermediate)
    fx.output("mel", mel)
    print("  " + C.describe("mel", mel))
    fx.write()
    return z, mel


def make_hifigan(ldm, gen):
    voc = ldm.first_stage_model.vocoder
    fx = C.Fixture("audioldm_hifigan", SCRIPT, VERSION, SEED,
                   "AudioLDM HiFi-GAN (audioldm.hifigan.models.Generator) as AudioLDM's checkpoint stores "
                   "it: get_vocoder() calls remove_weight_norm() in AutoencoderKL.__init__, before the "
                   "checkpoint is loaded, so keys are plain weight/bias. Input mel [B,1,F,num_mels] as "
                   "the VAE emits it; LatentDiffusion.mel_spectrogram_to_waveform squeezes and permutes "
                   "to [B,num_mels,F]. Output [B,160F+32] float (no int16 scaling on this path).",
                   {"h": HIFIGAN}, LIBS)
    fx.state({k: v for k, v in ldm.state_dict().items() if k.startswith("first_stage_model.vocoder.")})
    mel = smooth_mel(gen, (2, 1, 20, HIFIGAN["num_mels"]))
    fx.input("mel", mel)
    with torch.no_grad():
        x = mel.squeeze(1).permute(0, 2, 1)
        wav = hifigan_traced(voc, x, fx.intermediate)
        ref = ldm.mel_spectrogram_to_waveform(mel)
    assert np.array_equal(wav.numpy(), ref)
    wav = wav.squeeze(1)
    assert wav.shape[-1] == 160 * mel.shape[2] + 32
    fx.output("waveform", wav)
    print("  " + C.describe("waveform", wav))
    fx.write()


def make_hifigan_wn(gen):
    voc = Generator(AttrDict(HIFIGAN_WN))
    voc.eval()
    C.randomize(voc, gen)
    quiet_post(voc, 0.2)
    fx = C.Fixture("audioldm_hifigan_wn", SCRIPT, VERSION, SEED,
                   "HiFi-GAN Generator that still carries torch.nn.utils.weight_norm (keys weight_g/"
                   "weight_v, norm over dim 0 of the stored weight: out-channels for Conv1d, IN-channels "
                   "for ConvTranspose1d [in,out,k]). AudioLDM's own checkpoint stores folded weights "
                   "(see audioldm_hifigan); this fixture tests weight-norm folding at conversion. Keys use "
                   "the same first_stage_model.vocoder. prefix.",
                   {"h": HIFIGAN_WN}, LIBS)
    fx.state({k: v for k, v in voc.state_dict().items()}, prefix="first_stage_model.vocoder.")
    mel = smooth_mel(gen, (1, 1, 12, HIFIGAN_WN["num_mels"]))
    fx.input("mel", mel)
    with torch.no_grad():
        wav = hifigan_traced(voc, mel.squeeze(1).permute(0, 2, 1), fx.intermediate)
        folded = copy.deepcopy(voc)
        folded.remove_weight_norm()
        wav_folded = folded(mel.squeeze(1).permute(0, 2, 1))
    fx.set_meta("max_abs_diff_vs_folded", f"{(wav - wav_folded).abs().max().item():.3e}")
    fx.output("waveform", wav.squeeze(1))
    print("  " + C.describe("waveform", wav))
    fx.write()


def latent_tail(ldm, samples):
    """audioldm.ldm.LatentDiffusion.generate_sample after sampling (the clamp rule is batch-wide)."""
    if torch.max(torch.abs(samples)) > 1e2:
        samples = torch.clip(samples, min=-10, max=10)
    mel = ldm.decode_first_stage(samples)
    waveform = ldm.mel_spectrogram_to_waveform(mel)
    return samples, mel, torch.from_numpy(waveform)


def make_decode_tail(ldm, gen):
    fx = C.Fixture("audioldm_decode_tail", SCRIPT, VERSION, SEED,
                   "Latent -> waveform tail of LatentDiffusion.generate_sample: if max|latent| > 100 over "
                   "the WHOLE batch tensor, every sample is clipped to [-10,10]; then decode_first_stage "
                   "and mel_spectrogram_to_waveform. Case a: sample 0 has one value 150, sample 1 only "
                   "values <= 40, so both get clipped. Case b: max 60 (> 10 but <= 100): no clipping. "
                   "Weights: those of audioldm_vae + audioldm_hifigan (same ckpt).",
                   {"first_stage_config": FIRST_STAGE, "h": HIFIGAN, "scale_factor": SCALE_FACTOR}, LIBS,
                   extra_meta={"weights_from": "audioldm_vae,audioldm_hifigan"})
    a = torch.randn(2, 8, 6, 8, generator=gen) * 4.0
    a[0, 3, 2, 5] = 150.0
    a[1] = a[1].clamp(-40, 40)
    a[1, 0, 0, 0] = -40.0
    b = torch.randn(1, 8, 6, 8, generator=gen) * 4.0
    b[0, 1, 4, 7] = 60.0
    b[0, 2, 1, 1] = -59.5
    with torch.no_grad():
        for case, z in (("a", a), ("b", b)):
            fx.input(f"{case}.latent", z)
            zc, mel, wav = latent_tail(ldm, z)
            fx.intermediate(f"{case}.latent_clamped", zc)
            fx.intermediate(f"{case}.mel", mel)
            fx.output(f"{case}.waveform", wav.squeeze(1))
            print(f"  case {case}: clamped={not torch.equal(zc, z)}; " + C.describe("wav", wav))
    fx.write()


def unet_forward_traced(unet, x, t, y, record):
    """UNetModel.forward with intermediates; asserts equality with the real call."""
    t_emb = timestep_embedding(t, unet.model_channels, repeat_only=False)
    record("t_emb", t_emb)
    emb_t = unet.time_embed(t_emb)
    record("time_embed", emb_t)
    emb_f = unet.film_emb(y)
    record("film_emb", emb_f)
    emb = torch.cat([emb_t, emb_f], dim=-1)
    record("emb", emb)
    hs = []
    h = x
    for i, module in enumerate(unet.input_blocks):
        h = module(h, emb, None)
        record(f"input_blocks.{i}", h)
        hs.append(h)
    h = unet.middle_block[0](h, emb)
    record("middle_block.0", h)
    h = unet.middle_block[1](h, None)
    record("middle_block.1", h)
    h = unet.middle_block[2](h, emb)
    record("middle_block.2", h)
    for i, module in enumerate(unet.output_blocks):
        h = torch.cat([h, hs.pop()], dim=1)
        h = module(h, emb, None)
        record(f"output_blocks.{i}", h)
    out = unet.out(h)
    ref = unet(x, t, y=y)
    assert torch.equal(out, ref), (out - ref).abs().max()
    return ref


def make_unet(ldm, gen):
    fx = C.Fixture("audioldm_unet", SCRIPT, VERSION, SEED,
                   "audioldm.latent_diffusion.openaimodel.UNetModel (film conditioning by concat, "
                   "SpatialTransformers with no context: attn1 and attn2 are both self-attention). "
                   "state.model.diffusion_model.* holds the EMA weights (what generate_sample runs under "
                   "ema_scope, and what the converter must take from ckpt/audioldm_tiny.ckpt, whose "
                   "model.diffusion_model.* are different training weights). Timesteps as f32.",
                   {"unet_config": {"target": "audioldm.latent_diffusion.openaimodel.UNetModel",
                                    "params": UNET}}, LIBS)
    fx.state(unet_state(ldm))
    x = torch.randn(2, 8, LDM["latent_t_size"], LDM["latent_f_size"], generator=gen)
    t = torch.tensor([996.0, 501.0])
    y = F.normalize(torch.randn(2, UNET["extra_film_condition_dim"], generator=gen), dim=-1)
    fx.input("x", x)
    fx.input("t", t)
    fx.input("film", y)
    with torch.no_grad(), ldm.ema_scope():
        eps = unet_forward_traced(ldm.model.diffusion_model, x, t.long(), y, fx.intermediate)
        # also through the wrapper, as LatentDiffusion.apply_model calls it
        eps2 = ldm.apply_model(x, t.long(), y[:, None, :])
    assert torch.equal(eps, eps2)
    fx.output("eps", eps)
    print("  " + C.describe("eps", eps))
    fx.write()


def make_ddim(ldm, gen):
    fx = C.Fixture("audioldm_ddim", SCRIPT, VERSION, SEED,
                   "audioldm.latent_diffusion.ddim.DDIMSampler (uniform discretisation, eta 1.0, LDM "
                   "'linear' betas linspace(sqrt(0.0015), sqrt(0.0195), 1000)^2). Part 1 (step{k}.*): "
                   "single p_sample_ddim steps of the 200-step schedule from given x, eps, noise. "
                   "Part 2 (run.*): LatentDiffusion.sample_log with ddim_steps=5 (timesteps 801..1), "
                   "CFG 2.5 with the given unconditional embedding, injected x_T and per-step noise, "
                   "EMA UNet weights of audioldm_unet; then the generate_sample tail (clamp rule, VAE, "
                   "HiFi-GAN; weights of audioldm_vae + audioldm_hifigan). run.step{i}.eps_batched is "
                   "the UNet output on [uncond; cond] (rows 0..B-1 uncond).",
                   {"ldm": LDM, "ddim_steps_single": DDIM_STEPS_FULL, "ddim_steps_run": 5,
                    "ddim_eta": DDIM_ETA, "unconditional_guidance_scale": CFG_SCALE},
                   LIBS, extra_meta={"weights_from": "audioldm_unet,audioldm_vae,audioldm_hifigan"})
    fx.output("alphas_cumprod", ldm.alphas_cumprod)
    # ---- part 1: single steps of the 200-step schedule
    sampler = CpuDDIMSampler(ldm)
    sampler.make_schedule(ddim_num_steps=DDIM_STEPS_FULL, ddim_eta=DDIM_ETA, verbose=False)
    fx.output("ddim200.timesteps", torch.from_numpy(sampler.ddim_timesteps.astype(np.float32)))
    fx.output("ddim200.alphas", torch.as_tensor(sampler.ddim_alphas, dtype=torch.float32))
    fx.output("ddim200.alphas_prev", torch.as_tensor(np.asarray(sampler.ddim_alphas_prev, dtype=np.float64)))
    fx.output("ddim200.sigmas", torch.as_tensor(sampler.ddim_sigmas, dtype=torch.float32))
    shape = (2, 8, LDM["latent_t_size"], LDM["latent_f_size"])

    class EpsModel:
        """Stands in for the LatentDiffusion in p_sample_ddim: returns the given eps."""

        def __init__(self, eps):
            self.eps = eps
            self.alphas_cumprod = ldm.alphas_cumprod
            self.alphas_cumprod_prev = ldm.alphas_cumprod_prev

        def apply_model(self, x, t, c):
            return self.eps.clone()

    steps = []
    for k, index in enumerate((199, 100, 0)):
        x = torch.randn(shape, generator=gen)
        eps = torch.randn(shape, generator=gen)
        z = torch.randn(shape, generator=gen)
        t = int(sampler.ddim_timesteps[index])
        sampler.model = EpsModel(eps)
        ddim_mod.noise_like = NoiseQueue([z])
        with torch.no_grad():
            x_prev, pred_x0 = sampler.p_sample_ddim(x, None, torch.full((2,), t, dtype=torch.long),
                                                    index=index)
        sampler.model = ldm
        fx.input(f"step{k}.x", x)
        fx.input(f"step{k}.eps", eps)
        fx.input(f"step{k}.noise", z)
        fx.input(f"step{k}.index", torch.tensor([float(index)]))
        fx.input(f"step{k}.t", torch.tensor([float(t)]))
        fx.output(f"step{k}.x_prev", x_prev)
        fx.output(f"step{k}.pred_x0", pred_x0)
        steps.append({"k": k, "index": index, "t": t})
    fx.set_meta("single_steps", steps)

    # ---- part 2: 5-step CFG run with the tiny UNet (EMA weights), then the decode tail
    B = 2
    fd = UNET["extra_film_condition_dim"]
    cond = F.normalize(torch.randn(B, 1, fd, generator=gen), dim=-1)
    uncond = F.normalize(torch.randn(1, 1, fd, generator=gen), dim=-1).repeat(B, 1, 1)
    x_T = torch.randn(shape, generator=gen)
    noises = [torch.randn(shape, generator=gen) for _ in range(5)]
    fx.input("run.cond", cond)
    fx.input("run.uncond", uncond)
    fx.input("run.x_T", x_T)
    fx.input("run.noise", torch.stack(noises))
    rec = {"x": [], "t": [], "eps_batched": [], "pred_x0": []}
    orig_apply = ldm.apply_model

    def apply_model(x_in, t_in, c_in):
        out = orig_apply(x_in, t_in, c_in)
        rec["x"].append(x_in[:B].clone())
        rec["t"].append(t_in[0].item())
        rec["eps_batched"].append(out.clone())
        return out

    ldm.apply_model = apply_model
    ddim_mod.noise_like = NoiseQueue(noises)
    with torch.no_grad(), ldm.ema_scope():
        samples, _ = ldm.sample_log(cond=cond, batch_size=B, ddim=True, ddim_steps=5, eta=DDIM_ETA,
                                    unconditional_guidance_scale=CFG_SCALE,
                                    unconditional_conditioning=uncond, x_T=x_T.clone(),
                                    img_callback=lambda pred_x0, i: rec["pred_x0"].append(pred_x0.clone()))
        _, mel, wav = latent_tail(ldm, samples)
    ldm.apply_model = orig_apply
    assert rec["t"] == [801, 601, 401, 201, 1], rec["t"]
    for i in range(5):
        fx.intermediate(f"run.step{i}.x", rec["x"][i])
        fx.intermediate(f"run.step{i}.eps_batched", rec["eps_batched"][i])
        fx.intermediate(f"run.step{i}.pred_x0", rec["pred_x0"][i])
    fx.input("run.timesteps", torch.tensor([float(t) for t in rec["t"]]))
    fx.output("run.latent", samples)
    fx.intermediate("run.mel", mel)
    fx.output("run.waveform", wav.squeeze(1))
    print("  " + C.describe("run.latent", samples) + "; " + C.describe("run.waveform", wav))
    fx.write()


def make_dpmsolver(gen):
    from diffusers import DPMSolverMultistepScheduler
    cases = {
        # diffusers defaults apart from the LDM beta schedule
        "a": dict(num_inference_steps=20, kwargs=dict()),
        # DDIM-like spacing (timesteps ..., 1) and < 15 steps: lower_order_final kicks in
        "b": dict(num_inference_steps=10, kwargs=dict(timestep_spacing="leading", steps_offset=1)),
    }
    configs = {}
    fx = C.Fixture("audioldm_dpmsolver", SCRIPT, VERSION, SEED,
                   "DPM-Solver++(2M) reference: diffusers DPMSolverMultistepScheduler with the AudioLDM "
                   "schedule (num_train_timesteps 1000, beta_schedule scaled_linear 0.0015..0.0195 = LDM "
                   "'linear', epsilon prediction). For each case: x_T and a fixed sequence of model "
                   "outputs eps[i] (independent of x) -> the sample after every step. Full scheduler "
                   "configs in metadata 'scheduler_configs'.",
                   {"cases": {k: {"num_inference_steps": v["num_inference_steps"], **v["kwargs"]}
                              for k, v in cases.items()}}, LIBS)
    shape = (2, 8, 4, 4)
    for name, case in cases.items():
        sch = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                                          beta_schedule="scaled_linear", algorithm_type="dpmsolver++",
                                          solver_order=2, prediction_type="epsilon", **case["kwargs"])
        sch.set_timesteps(case["num_inference_steps"])
        configs[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(dict(sch.config).items())
                         if not k.startswith("_")}
        n = len(sch.timesteps)
        x = torch.randn(shape, generator=gen)
        eps = torch.randn((n,) + shape, generator=gen)
        fx.input(f"{name}.x_T", x)
        fx.input(f"{name}.eps", eps)
        fx.output(f"{name}.timesteps", sch.timesteps.float())
        fx.output(f"{name}.sigmas", sch.sigmas.float())
        outs = []
        for i, t in enumerate(sch.timesteps):
            x = sch.step(eps[i], t, x).prev_sample
            outs.append(x)
        fx.output(f"{name}.samples", torch.stack(outs))
        print(f"  case {name}: timesteps {sch.timesteps.tolist()}")
    fx.set_meta("scheduler_configs", configs)
    fx.write()


def save_ckpt(ldm):
    """The Lightning-style checkpoint: torch.save({"state_dict": LatentDiffusion.state_dict(), ...})."""
    sd = ldm.state_dict()
    # The VAE encoder is never used for inference; drop all but two of its tensors to keep the
    # file small (the converter must ignore first_stage_model.encoder.* and quant_conv.* anyway).
    keep_enc = {"first_stage_model.encoder.conv_in.weight", "first_stage_model.encoder.conv_in.bias"}
    sd = {k: v for k, v in sd.items() if not k.startswith("first_stage_model.encoder.") or k in keep_enc}
    ema = [k for k in sd if k.startswith("model_ema.")]
    non_ema = [k for k in sd if k.startswith("model.diffusion_model.")]
    # CLAP's text tower (cond_stage_model.model.text_*), the one of make_clap.py's golden: the
    # converter computes the pack's uncond_embedding with it.
    import make_clap
    sd.update(make_clap.tiny_text_state())
    ckpt = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.9.0", "state_dict": sd}
    path = C.FIXTURES / "ckpt" / "audioldm_tiny.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, str(path))
    diff = max((sd[f"model.{n}"] - sd[f"model_ema.{ldm.model_ema.m_name2s_name[n]}"]).abs().max().item()
               for n, _ in ldm.model.named_parameters())
    print(f"  wrote {path.relative_to(C.REPO)}: {path.stat().st_size:,} bytes, {len(sd)} keys "
          f"({len(non_ema)} model.diffusion_model.*, {len(ema)} model_ema.*; max |ema - train| {diff:.2f})")
    verify_ckpt(path)


def verify_ckpt(path):
    """Reload the ckpt into a fresh model the way AudioLDM does; the EMA UNet must give the golden."""
    from safetensors.torch import load_file
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    fresh = build_ldm(torch.Generator().manual_seed(1))
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("cond_stage_model.")}
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("first_stage_model.encoder.") for k in missing), (missing, unexpected)
    g = load_file(str(C.FIXTURES / "audioldm_unet.safetensors"))
    args = (g["in.x"], g["in.t"].long(), g["in.film"][:, None, :])
    with torch.no_grad():
        with fresh.ema_scope():
            eps_ema = fresh.apply_model(*args)
        eps_train = fresh.apply_model(*args)
    assert torch.equal(eps_ema, g["out.eps"])
    print(f"  ckpt check: EMA weights reproduce audioldm_unet out.eps exactly; the non-EMA weights "
          f"differ by up to {(eps_train - g['out.eps']).abs().max():.3f}")


# --------------------------------------------------------------------------------------
# A second size that no release has ("m/l-like"), converted without any --config
# --------------------------------------------------------------------------------------

# Every width differs from both the release and the tiny model above: UNet model_channels 64 and
# 3 levels (channel_mult of another length), attention only at the middle level, 4 latent
# channels, num_head_channels 16 (not the default 32: it must come from the checkpoint's
# hyper_parameters); VAE ch 32 with 3 levels of one block each (×4 upsampling);
# HiFi-GAN 32 channels with two resblock kernels [3, 5]; a non-default noise schedule
# (0.00085..0.012), which the converter reads from `betas` / hyper_parameters.
M_SEED = 20261127
M_UNET = {
    "image_size": 64,
    "extra_film_condition_dim": 16,
    "extra_film_use_concat": True,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 64,
    "attention_resolutions": [2],
    "num_res_blocks": 1,
    "channel_mult": [1, 1, 1],
    "num_head_channels": 16,
    "use_spatial_transformer": True,
}
M_DDCONFIG = {**DDCONFIG, "z_channels": 4, "ch": 32, "ch_mult": [1, 1, 1], "num_res_blocks": 0}
M_FIRST_STAGE = {"target": FIRST_STAGE["target"], "params": {**FIRST_STAGE["params"], "embed_dim": 4, "ddconfig": M_DDCONFIG}}
M_HIFIGAN = {**HIFIGAN, "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 5],
             "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]], "num_mels": 16}
M_LDM = {**LDM, "linear_start": 0.00085, "linear_end": 0.012, "latent_t_size": 8, "latent_f_size": 4, "channels": 4}
M_SCALE_FACTOR = 1.2345678806304932
# CLAP's text tower: width 64 (one 64-wide head, RoBERTa's rule, so no config is needed) and a
# joint space as wide as the UNet's FiLM condition, so the converted pack generates end to end.
M_CLAP = dict(vocab_size=100, hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
              intermediate_size=128, max_position_embeddings=514, type_vocab_size=1)


def round_half(module):
    """Round every parameter to fp16 (stored as fp16 in the checkpoint, to keep it small; the
    reference runs in f32 on exactly those values)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())


def make_m_like():
    gen = torch.Generator().manual_seed(M_SEED)
    ldm = LatentDiffusion(
        device="cpu",
        first_stage_config=M_FIRST_STAGE,
        cond_stage_config={"target": "torch.nn.Identity", "params": {}},
        scale_factor=M_SCALE_FACTOR,
        unet_config={"target": "audioldm.latent_diffusion.openaimodel.UNetModel", "params": M_UNET},
        base_learning_rate=5e-06,
        use_ema=False,
        **M_LDM,
    )
    voc = Generator(AttrDict(M_HIFIGAN))
    voc.eval()
    voc.remove_weight_norm()
    ldm.first_stage_model.vocoder = voc
    ldm.eval()
    import make_clap
    clap = make_clap.build_clap(M_CLAP, M_UNET["extra_film_condition_dim"], gen)
    with torch.no_grad():
        ldm.scale_factor.fill_(M_SCALE_FACTOR)
        C.randomize(ldm.model, gen)
        C.randomize(ldm.first_stage_model, gen)
        quiet_post(voc, 0.5)
        for m in (ldm, clap):
            round_half(m)
    n_unet = sum(p.numel() for p in ldm.model.parameters())
    print(f"  params: unet {n_unet:,}, vae decoder {sum(p.numel() for p in ldm.first_stage_model.decoder.parameters()):,}, "
          f"vocoder {sum(p.numel() for p in voc.parameters()):,}")
    hparams = {**M_LDM, "base_learning_rate": 5e-06, "use_ema": False, "scale_factor": M_SCALE_FACTOR,
               "unet_config": {"target": "audioldm.latent_diffusion.openaimodel.UNetModel", "params": M_UNET},
               "first_stage_config": M_FIRST_STAGE,
               "cond_stage_config": {"target": "audioldm.clap.encoders.CLAPAudioEmbeddingClassifierFreev2",
                                     "params": {"key": "waveform", "sampling_rate": 16000, "embed_mode": "audio",
                                                "unconditional_prob": 0.1}}}
    fx = C.Fixture("audioldm_m_like", SCRIPT, VERSION, M_SEED,
                   "AudioLDM at a size no release has, for `ssv2a convert` without --config: the weights are "
                   "in ckpt/audioldm_m_like.ckpt only (a Lightning checkpoint with hyper_parameters, fp16 "
                   "parameters, no EMA copy). unet.*: UNetModel eps (intermediates inter.unet.*); vae.*: "
                   "decode_first_stage (inter.vae.*); voc.*: HiFi-GAN on a log-mel-like input "
                   "(inter.voc.*); tail.*: mel_spectrogram_to_waveform of out.vae.mel.",
                   {"hyper_parameters": hparams, "h": M_HIFIGAN, "clap_text": M_CLAP}, LIBS)
    # UNet
    x = torch.randn(2, M_LDM["channels"], M_LDM["latent_t_size"], M_LDM["latent_f_size"], generator=gen)
    t = torch.tensor([996.0, 501.0])
    y = F.normalize(torch.randn(2, M_UNET["extra_film_condition_dim"], generator=gen), dim=-1)
    fx.input("unet.x", x)
    fx.input("unet.t", t)
    fx.input("unet.film", y)
    with torch.no_grad():
        eps = unet_forward_traced(ldm.model.diffusion_model, x, t.long(), y, lambda n, v: fx.intermediate(f"unet.{n}", v))
        assert torch.equal(eps, ldm.apply_model(x, t.long(), y[:, None, :]))
    fx.output("unet.eps", eps)
    # VAE, then the vocoder on its mel (generate_sample's tail)
    z = torch.randn(2, M_LDM["channels"], 4, M_LDM["latent_f_size"], generator=gen) * 1.3
    fx.input("vae.latent", z)
    with torch.no_grad():
        mel = vae_decode_traced(ldm, z, lambda n, v: fx.intermediate(f"vae.{n}", v))
        tail = torch.from_numpy(ldm.mel_spectrogram_to_waveform(mel)).squeeze(1)
    fx.output("vae.mel", mel)
    fx.output("tail.waveform", tail)
    # HiFi-GAN alone
    m = smooth_mel(gen, (2, 1, 20, M_HIFIGAN["num_mels"]))
    fx.input("voc.mel", m)
    with torch.no_grad():
        wav = hifigan_traced(voc, m.squeeze(1).permute(0, 2, 1), lambda n, v: fx.intermediate(f"voc.{n}", v)).squeeze(1)
    assert wav.shape[-1] == 160 * 20 + 32
    fx.output("voc.waveform", wav)
    print("  " + C.describe("eps", eps) + "; " + C.describe("mel", mel) + "; " + C.describe("wav", wav))
    fx.write()
    # The checkpoint: parameters in fp16 (buffers such as betas and scale_factor in f32).
    sd = ldm.state_dict()
    params = {k for k, _ in ldm.named_parameters()}
    keep_enc = {"first_stage_model.encoder.conv_in.weight", "first_stage_model.encoder.conv_in.bias"}
    sd = {k: (v.half() if k in params else v) for k, v in sd.items()
          if not k.startswith("first_stage_model.encoder.") or k in keep_enc}
    assert not any(k.startswith("model_ema.") for k in sd)
    sd.update({k: v.half() for k, v in make_clap.text_state(clap).items()})
    ckpt = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.9.0", "state_dict": sd,
            "hyper_parameters": hparams}
    path = C.FIXTURES / "ckpt" / "audioldm_m_like.ckpt"
    torch.save(ckpt, str(path))
    print(f"  wrote {path.relative_to(C.REPO)}: {path.stat().st_size:,} bytes, {len(sd)} keys")
    # Reload as AudioLDM does; the f32 model on the stored values gives the golden.
    back = torch.load(str(path), map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in back["state_dict"].items() if not k.startswith("cond_stage_model.")}
    missing, unexpected = ldm.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("first_stage_model.encoder.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        assert torch.equal(ldm.apply_model(x, t.long(), y[:, None, :]), eps)


def main():
    if sys.argv[1:] == ["m_like"]:
        print("audioldm_m_like + ckpt/audioldm_m_like.ckpt"); make_m_like()
        return
    gen = torch.Generator().manual_seed(SEED)
    print("building tiny LatentDiffusion")
    ldm = build_ldm(gen)
    n_unet = sum(p.numel() for p in ldm.model.parameters())
    n_dec = sum(p.numel() for p in ldm.first_stage_model.decoder.parameters())
    n_voc = sum(p.numel() for p in ldm.first_stage_model.vocoder.parameters())
    print(f"  params: unet {n_unet:,}, vae decoder {n_dec:,}, vocoder {n_voc:,}")
    print("audioldm_vae");          make_vae(ldm, gen)
    print("audioldm_hifigan");      make_hifigan(ldm, gen)
    print("audioldm_hifigan_wn");   make_hifigan_wn(gen)
    print("audioldm_decode_tail");  make_decode_tail(ldm, gen)
    print("audioldm_unet");         make_unet(ldm, gen)
    print("audioldm_ddim");         make_ddim(ldm, gen)
    print("audioldm_dpmsolver");    make_dpmsolver(gen)
    print("ckpt/audioldm_tiny.ckpt"); save_ckpt(ldm)
    print("audioldm_m_like + ckpt/audioldm_m_like.ckpt"); make_m_like()


if __name__ == "__main__":
    main()
