//! The stages of a run, as `Pipeline` methods: the text prompt (CLAP text tower), sources of
//! an image (given or detected) and their crops, CLIP, Cycle Mix, the three ways to a CLAP-space
//! embedding (image, composition, video with the temporal aggregator), and AudioLDM. The
//! orchestration (`Pipeline::generate`), pack handling and loading stay in the parent module.

use super::*;

impl Pipeline {
    /// Text to audio needs the AudioLDM pack's CLAP text tower and tokenizer files: checked from
    /// the pack's header before any model runs.
    pub(super) fn check_prompt_pack(&self) -> Result<()> {
        let (meta, name) = match self.packs.get(&Model::AudioLdm) {
            None => return self.weights(Model::AudioLdm).map(|_| ()),
            #[cfg(not(target_arch = "wasm32"))]
            Some(PackSource::File(p)) => (read_pack_meta(p)?, p.display().to_string()),
            Some(PackSource::Weights(w)) => (w.metadata().clone(), w.source().to_string()),
        };
        if !meta.get("components").is_some_and(|c| c.split(',').any(|x| x == clap::TEXT_COMPONENT)) {
            return Err(Error::Format(format!(
                "{name}: this AudioLDM pack has no CLAP text tower (components: {}); {}",
                meta.get("components").map(|s| s.as_str()).unwrap_or("none"),
                clap::TOKENIZER_FIX
            )));
        }
        if !clap::has_tokenizer_meta(&meta) {
            return Err(clap::no_tokenizer(&name));
        }
        Ok(())
    }

    /// The prompt's CLAP text embedding (the text encoder stage: loading the tower and the
    /// tokenizer the first time, tokenizing, the tower, L2 normalisation).
    pub(super) async fn prompt_clap(&mut self, prompt: &str, run: &mut Run<'_>) -> Result<(Vec<f32>, PromptTokens)> {
        self.load(Model::AudioLdm, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::TextEncoder, 0, 1);
        if self.clap_text.is_none() {
            let w = self.weights(Model::AudioLdm)?;
            let tok = clap::load_tokenizer(&w)?;
            let text = clap::load_text(&w)?;
            if let Some((_, slot @ None)) = &mut self.audioldm {
                // A pack without a stored "" embedding (the demo's in-memory one): take it from
                // this same tower rather than loading the tower a second time.
                *slot = Some(clap::uncond_embedding(&text).await?);
            }
            self.clap_text = Some((text, tok));
        }
        let (model, tok) = self.clap_text.as_ref().ok_or_else(|| Error::Format("CLAP text tower not loaded".into()))?;
        let (emb, enc) = clap::prompt_embedding(model, tok, prompt).await?;
        let fd = self.audioldm.as_ref().map(|(l, _)| l.unet.config.film_dim()).unwrap_or(emb.len());
        if emb.len() != fd {
            return Err(Error::Format(format!(
                "the AudioLDM pack's CLAP text tower makes {}-d embeddings but its UNet takes {fd}-d ones: the pack is inconsistent",
                emb.len()
            )));
        }
        let used = enc.attention_mask.iter().filter(|&&m| m != 0).count();
        let tokens = PromptTokens { tokens: used.saturating_sub(2), max_length: enc.ids.len(), truncated: enc.truncated };
        run.event(Stage::TextEncoder, 1, 1);
        run.time(Stage::TextEncoder, t0);
        Ok((emb, tokens))
    }

    /// Sources of one image (given or detected), with their crops.
    pub(super) async fn image_sources(
        &mut self,
        images: &[&RgbImage],
        given: Option<&[SourceBox]>,
        settings: &Settings,
        run: &mut Run<'_>,
    ) -> Result<Vec<Vec<(SourceBox, RgbImage)>>> {
        let first = images.first().ok_or_else(|| Error::arg("detect", "no images"))?;
        let size = detect::crop_size(first.width, first.height);
        if let Some(boxes) = given {
            let img = images[0];
            if boxes.len() > MAX_SOURCES {
                return Err(Error::arg("sources", format!("{} sources: at most {MAX_SOURCES} fit the remixer's slots", boxes.len())));
            }
            let mut out = vec![];
            for (i, b) in boxes.iter().enumerate() {
                check_box(b, img.width, img.height, i)?;
                out.push((b.clone(), crop_source(img, b.xyxy, size, settings.detect.crop)?));
            }
            return Ok(vec![out]);
        }
        self.load(Model::Detector, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Detect, 0, images.len());
        let det = self.detector.as_ref().ok_or_else(|| Error::Format("detector not loaded".into()))?;
        let found = det.sources(&self.gpu, images, &settings.detect).await?;
        self.done_with(Model::Detector, settings);
        run.event(Stage::Detect, images.len(), images.len());
        run.time(Stage::Detect, t0);
        Ok(found
            .into_iter()
            .map(|mut srcs| {
                srcs.truncate(detect::slot_sources(&srcs).len());
                srcs.into_iter().enumerate().map(|(k, s)| (SourceBox::detected(&s.detection, k), s.crop)).collect()
            })
            .collect())
    }

    pub(super) async fn embed(&mut self, images: &[ClipImage<'_>], settings: &Settings, run: &mut Run<'_>) -> Result<HostTensor> {
        self.load(Model::Clip, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Clip, 0, images.len());
        let clip = self.clip.as_ref().ok_or_else(|| Error::Format("CLIP not loaded".into()))?;
        // Chunks bound the activation size (ViT-L/14 at 17 images is ~60 MB per activation).
        let mut data = vec![];
        let mut d = 0;
        for chunk in images.chunks(17) {
            let e = clip.embed_images(chunk).await?;
            d = e.shape[1];
            data.extend(e.data);
            run.check()?;
        }
        self.done_with(Model::Clip, settings);
        run.event(Stage::Clip, images.len(), images.len());
        run.time(Stage::Clip, t0);
        HostTensor::new([images.len(), d], data)
    }

    pub(super) async fn mix(&mut self, input: &MixInput, settings: &Settings, noise: &mut Rng, run: &mut Run<'_>) -> Result<HostTensor> {
        self.load(Model::Ssv2a, run)?;
        run.check()?;
        let t0 = now_s();
        let rounds = settings.cycle.its + 1;
        run.event(Stage::CycleMix, 0, rounds);
        let model = self.ssv2a.as_ref().ok_or_else(|| Error::Format("SSV2A not loaded".into()))?;
        let cancel = run.cancel;
        let progress = &mut *run.progress;
        let out = model
            .cycle_mix_with(input, &settings.cycle, noise, None, &mut |i, n| progress(Event { stage: Stage::CycleMix, done: i, total: n }), cancel)
            .await?;
        run.time(Stage::CycleMix, t0);
        Ok(out)
    }

    pub(super) fn ssv2a_dims(&mut self, run: &mut Run<'_>) -> Result<(usize, usize)> {
        self.load(Model::Ssv2a, run)?;
        let c = &self.ssv2a.as_ref().ok_or_else(|| Error::Format("SSV2A not loaded".into()))?.config;
        Ok((c.clip_dim, c.remixer.slot))
    }

    /// Slot sequence of one image scene: [global, sources…] with weights.
    pub(super) fn scene_input(global: &[f32], sources: &[(SourceBox, Vec<f32>)], image_weight: f32, slot: usize) -> Result<MixInput> {
        let rows: Vec<&[f32]> = sources.iter().map(|(_, e)| e.as_slice()).collect();
        let mut input = MixInput::image(global, &rows, slot)?;
        let mut w = vec![1f32; slot];
        w[0] = image_weight;
        for (k, (b, _)) in sources.iter().enumerate() {
            w[k + 1] = b.weight;
        }
        if w.iter().any(|&x| x != 1.0) {
            input.weights = Some(w);
        }
        Ok(input)
    }

    pub(super) async fn image_clap(
        &mut self,
        image: &ImageSource,
        settings: &Settings,
        noise: &mut Rng,
        run: &mut Run<'_>,
    ) -> Result<(Vec<f32>, Vec<Vec<UsedSource>>)> {
        let (clip_dim, slot) = self.ssv2a_dims(run)?;
        let rgb = image.picture.rgb();
        let mut found = self.image_sources(&[&*rgb], image.sources.as_deref(), settings, run).await?;
        let srcs = found.pop().unwrap_or_default();
        if srcs.len() + 1 > slot {
            return Err(Error::arg("sources", format!("{} sources do not fit the remixer's {slot} slots (slot 0 is the image)", srcs.len())));
        }
        let mut clip_in = vec![ClipImage::from(&image.picture)];
        clip_in.extend(srcs.iter().map(|(_, c)| ClipImage::Rgb(c)));
        let e = self.embed(&clip_in, settings, run).await?;
        check_dim(e.shape[1], clip_dim)?;
        let rows: Vec<(SourceBox, Vec<f32>)> =
            srcs.iter().enumerate().map(|(k, (b, _))| (b.clone(), e.data[(k + 1) * clip_dim..(k + 2) * clip_dim].to_vec())).collect();
        let input = Self::scene_input(&e.data[..clip_dim], &rows, image.weight, slot)?;
        let clap = self.mix(&input, settings, noise, run).await?;
        let mut used = vec![UsedSource::whole(format!("image {}", image.name), image.weight)];
        used.extend(srcs.iter().map(|(b, _)| b.used()));
        Ok((clap.data, vec![used]))
    }

    pub(super) async fn composition_clap(
        &mut self,
        images: &[ImageSource],
        audios: &[AudioClip],
        settings: &Settings,
        noise: &mut Rng,
        run: &mut Run<'_>,
    ) -> Result<(Vec<f32>, Vec<Vec<UsedSource>>)> {
        let (clip_dim, slot) = self.ssv2a_dims(run)?;
        let n = images.len() + audios.len();
        if n + 1 > slot {
            return Err(Error::arg("sources", format!("{n} sources do not fit the remixer's {slot} slots (slot 0 stays empty)")));
        }
        let e = if images.is_empty() {
            HostTensor::new([0, clip_dim], vec![])?
        } else {
            let clip_in: Vec<ClipImage> = images.iter().map(|i| ClipImage::from(&i.picture)).collect();
            self.embed(&clip_in, settings, run).await?
        };
        check_dim(e.shape[1], clip_dim)?;
        let rows: Vec<&[f32]> = e.data.chunks_exact(clip_dim).collect();
        // Audio sources: CLAP audio embedding, folded into a fixed manifold code (`fold_claps`).
        let mut codes = vec![];
        if !audios.is_empty() {
            let claps = self.audio_claps(audios, run).await?;
            let model = self.ssv2a.as_ref().ok_or_else(|| Error::Format("SSV2A not loaded".into()))?;
            let (a, d) = (audios.len(), claps.len() / audios.len());
            let x = Tensor::from_slice(&self.gpu, &claps, [a, d])?;
            let folded = model
                .manifold
                .fold_claps(
                    &x,
                    settings.cycle.var_samples,
                    noise,
                    crate::models::ssv2a::sampling::Draw::at(crate::models::ssv2a::sampling::DrawKind::FoldClaps, 0, 0),
                )
                .await?;
            let m = folded.data.len() / a;
            codes = folded.data.chunks_exact(m).map(|c| c.to_vec()).collect::<Vec<_>>();
        }
        let code_rows: Vec<&[f32]> = codes.iter().map(|c| c.as_slice()).collect();
        let manifold_dim = self.ssv2a.as_ref().map(|m| m.config.manifold_dim).unwrap_or(0);
        let mut input = MixInput::multimodal(&rows, &code_rows, slot, clip_dim, manifold_dim)?;
        if images.iter().any(|i| i.weight != 1.0) {
            let mut w = vec![1f32; slot];
            for (k, i) in images.iter().enumerate() {
                w[k + 1] = i.weight;
            }
            input.weights = Some(w);
        }
        let clap = self.mix(&input, settings, noise, run).await?;
        let mut used: Vec<UsedSource> = images.iter().map(|i| UsedSource::whole(format!("image {}", i.name), i.weight)).collect();
        used.extend(audios.iter().map(|a| UsedSource::whole(format!("audio {}", a.name), 1.0)));
        Ok((clap.data, vec![used]))
    }

    /// Load the AudioLDM pack's CLAP audio tower (once; released with AudioLDM).
    fn load_clap_audio(&mut self) -> Result<()> {
        if self.clap_audio.is_none() {
            let w = self.weights(Model::AudioLdm)?;
            self.clap_audio =
                Some(clap::load_audio(&w).map_err(|e| Error::Format(format!("{e} (or run with --rank none and one candidate, without audio sources)")))?);
        }
        Ok(())
    }

    /// CLAP audio embeddings of the audio sources ([A·512], unit norm): resampled to the
    /// tower's rate with the high-quality resampler, mean removed and peak-normalised to 0.5 as
    /// the official code does, fitted to the tower's clip from its start.
    pub(super) async fn audio_claps(&mut self, audios: &[AudioClip], run: &mut Run<'_>) -> Result<Vec<f32>> {
        self.load_clap_audio()?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::AudioEncoder, 0, audios.len());
        let tower = self.clap_audio.as_ref().ok_or_else(|| Error::Format("CLAP audio tower not loaded".into()))?;
        let rate = tower.config.sample_rate as u32;
        let mut waves = vec![];
        for a in audios {
            let r = crate::media::resample::resample(&a.samples, a.sample_rate, rate).map_err(|e| Error::Format(format!("{}: {e}", a.name)))?;
            waves.push(crate::media::audio::remove_mean_and_peak_normalize(&r));
        }
        let refs: Vec<&[f32]> = waves.iter().map(|w| w.as_slice()).collect();
        let emb = tower.embed_waves(&refs, &vec![0; refs.len()])?.to_vec().await?;
        run.event(Stage::AudioEncoder, audios.len(), audios.len());
        run.time(Stage::AudioEncoder, t0);
        Ok(emb)
    }

    /// AudioLDM and the candidate ranking: (waveform, every candidate's score, the kept one).
    pub(super) async fn audio_ranked(&mut self, clap: &[f32], settings: &Settings, run: &mut Run<'_>) -> Result<(Vec<f32>, Vec<f32>, usize)> {
        let n = settings.generate.candidates;
        if n <= 1 || settings.rank == Rank::None {
            return Ok((self.audio(clap, settings, run).await?, vec![], 0));
        }
        self.load_clap_audio()?;
        let all = self.audio_candidates(clap, settings, run).await?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Rank, 0, n);
        let len = all.len() / n;
        let target: Vec<f32> = match settings.rank {
            Rank::Official => self.uncond_embedding()?,
            _ => clap.to_vec(),
        };
        let tower = self.clap_audio.as_ref().ok_or_else(|| Error::Format("CLAP audio tower not loaded".into()))?;
        let rate = tower.config.sample_rate as u32;
        let mut waves = vec![];
        for c in all.chunks_exact(len) {
            waves.push(crate::media::resample::torchaudio_resample(c, SAMPLE_RATE, rate)?);
        }
        let refs: Vec<&[f32]> = waves.iter().map(|w| w.as_slice()).collect();
        let emb = tower.embed_waves(&refs, &vec![0; n])?.to_vec().await?;
        let d = emb.len() / n;
        if d != target.len() {
            return Err(Error::Format(format!("CLAP's audio tower makes {d}-d embeddings but the ranking target has {}", target.len())));
        }
        let norm = target.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        let scores: Vec<f32> = emb.chunks_exact(d).map(|e| e.iter().zip(&target).map(|(a, b)| a * b).sum::<f32>() / norm).collect();
        // The first of equal scores wins (as torch.argmax).
        let best = scores.iter().enumerate().fold(0, |b, (i, &s)| if s > scores[b] { i } else { b });
        run.event(Stage::Rank, n, n);
        run.time(Stage::Rank, t0);
        Ok((all[best * len..(best + 1) * len].to_vec(), scores, best))
    }

    pub(super) async fn video_clap(
        &mut self,
        video: &VideoFrames,
        settings: &Settings,
        noise: &mut Rng,
        run: &mut Run<'_>,
    ) -> Result<(Vec<f32>, Vec<Vec<UsedSource>>)> {
        let (clip_dim, slot) = self.ssv2a_dims(run)?;
        if video.frames.is_empty() {
            return Err(Error::arg("video", format!("{}: no frames", video.name)));
        }
        let refs: Vec<&RgbImage> = video.frames.iter().collect();
        let per_frame = self.image_sources(&refs, None, settings, run).await?;
        let mut clip_in = vec![];
        for (f, srcs) in video.frames.iter().zip(&per_frame) {
            clip_in.push(ClipImage::Rgb(f));
            clip_in.extend(srcs.iter().map(|(_, c)| ClipImage::Rgb(c)));
        }
        let e = self.embed(&clip_in, settings, run).await?;
        check_dim(e.shape[1], clip_dim)?;
        // One batched Cycle Mix over all frames ([F, slot, d]), as upstream.
        let mut clips = vec![];
        let mut used = vec![];
        let mut row = 0;
        for srcs in &per_frame {
            let global = e.data[row * clip_dim..(row + 1) * clip_dim].to_vec();
            let rows: Vec<(SourceBox, Vec<f32>)> =
                srcs.iter().enumerate().map(|(k, (b, _))| (b.clone(), e.data[(row + 1 + k) * clip_dim..(row + 2 + k) * clip_dim].to_vec())).collect();
            row += 1 + srcs.len();
            clips.extend(Self::scene_input(&global, &rows, 1.0, slot)?.clips.data);
            let mut u = vec![UsedSource::whole("frame".into(), 1.0)];
            u.extend(srcs.iter().map(|(b, _)| b.used()));
            used.push(u);
        }
        let f = video.frames.len();
        let input = MixInput { clips: HostTensor::new([f, slot, clip_dim], clips)?, fixed_src: None, weights: None };
        let claps = self.mix(&input, settings, noise, run).await?; // [F, C]
        self.load(Model::Aggregator, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Aggregate, 0, 1);
        let agg = self.aggregator.as_ref().ok_or_else(|| Error::Format("aggregator not loaded".into()))?;
        let c = claps.shape[1];
        let t = Tensor::from_slice(&self.gpu, &claps.data, [1, f, c])?;
        let mode = if settings.aggregator_dropout { AggregatorMode::OfficialTrainDropout } else { AggregatorMode::Eval };
        let out = agg.sample(&t, settings.aggregator_var_samples, mode, noise).await?;
        run.event(Stage::Aggregate, 1, 1);
        run.time(Stage::Aggregate, t0);
        Ok((out.data, used))
    }

    /// AudioLDM alone: a CLAP-space embedding → waveform with `settings.generate` and
    /// `settings.seed`.
    pub async fn clap_to_audio(&mut self, clap: &[f32], settings: &Settings, progress: &mut dyn FnMut(Event), cancel: &dyn Fn() -> bool) -> Result<Vec<f32>> {
        settings.check()?;
        let mut run = Run { progress, cancel, timings: vec![] };
        self.audio(clap, settings, &mut run).await
    }

    pub(super) async fn audio(&mut self, clap: &[f32], settings: &Settings, run: &mut Run<'_>) -> Result<Vec<f32>> {
        self.audio_impl(clap, settings, run, false).await
    }

    /// Every candidate's waveform, concatenated in candidate order.
    async fn audio_candidates(&mut self, clap: &[f32], settings: &Settings, run: &mut Run<'_>) -> Result<Vec<f32>> {
        self.audio_impl(clap, settings, run, true).await
    }

    /// The unconditional embedding guidance uses (given, else the pack's).
    fn uncond_embedding(&self) -> Result<Vec<f32>> {
        let pack = self.audioldm.as_ref().and_then(|(_, u)| u.as_ref());
        self.uncond.as_ref().or(pack).cloned().ok_or_else(|| Error::Format(format!("the AudioLDM pack has no `{UNCOND_TENSOR}` to rank against")))
    }

    async fn audio_impl(&mut self, clap: &[f32], settings: &Settings, run: &mut Run<'_>, all: bool) -> Result<Vec<f32>> {
        self.load(Model::AudioLdm, run)?;
        run.check()?;
        if self.uncond.is_none() && matches!(&self.audioldm, Some((_, None))) {
            // A pack with CLAP's text tower but no stored embedding (the demo's random pack):
            // compute it as the converter does.
            let u = crate::models::clap::uncond_from_pack(&self.weights(Model::AudioLdm)?).await?;
            if let Some((_, slot)) = &mut self.audioldm {
                *slot = u;
            }
        }
        let (ldm, pack_uncond) = self.audioldm.as_ref().ok_or_else(|| Error::Format("AudioLDM not loaded".into()))?;
        let fd = ldm.unet.config.film_dim();
        if clap.len() != fd {
            return Err(Error::Format(format!(
                "the SSV2A pack makes {}-d CLAP embeddings but the AudioLDM pack's UNet takes {fd}-d ones: the packs do not belong together",
                clap.len()
            )));
        }
        let uncond = self.uncond.as_ref().or(pack_uncond.as_ref()).ok_or_else(|| {
            Error::Format(format!(
                "the AudioLDM pack has no `{UNCOND_TENSOR}` (the CLAP text embedding of \"\", needed for classifier-free guidance) and none was given; \
                 the pack was converted without CLAP's text tower: convert the checkpoint again with this version (`ssv2a convert --kind audioldm` stores it) or pass one with --uncond FILE"
            ))
        })?;
        if uncond.len() != fd {
            return Err(Error::Format(format!("the unconditional embedding has {} values, the UNet takes {fd}", uncond.len())));
        }
        let gs = &settings.generate;
        let emb = Tensor::from_slice(&self.gpu, clap, [1, fd])?;
        let t0 = now_s();
        let steps = gs.steps;
        run.event(Stage::Diffusion, 0, steps);
        let mut t_diffused = None;
        let cancel = run.cancel;
        let wav = {
            let progress = &mut *run.progress;
            let mut on_step = |p: audioldm::sampler::Progress| {
                progress(Event { stage: Stage::Diffusion, done: p.step, total: p.steps });
                if p.step == p.steps {
                    t_diffused = Some(now_s());
                    progress(Event { stage: Stage::Decode, done: 0, total: 1 });
                }
            };
            if all {
                ldm.generate_candidates(&emb, uncond, gs, settings.seed, &mut on_step, cancel).await?
            } else {
                ldm.generate(&emb, uncond, gs, settings.seed, &mut on_step, cancel).await?
            }
        };
        let samples = wav.to_vec().await?;
        let t1 = now_s();
        let td = t_diffused.unwrap_or(t1);
        run.timings.push((Stage::Diffusion, td - t0));
        run.timings.push((Stage::Decode, t1 - td));
        run.event(Stage::Decode, 1, 1);
        if samples.iter().any(|v| !v.is_finite()) {
            return Err(Error::Format("the generated waveform has NaN or infinite samples".into()));
        }
        Ok(samples)
    }
}

pub(super) fn check_dim(got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Format(format!("the CLIP pack makes {got}-d embeddings but the SSV2A pack takes {want}-d ones: the packs do not belong together")));
    }
    Ok(())
}
