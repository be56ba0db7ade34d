// Owns the wasm instance and the WebGPU device; talks to the page with messages.
import init, { Session, Generator, encode_wav } from "./pkg/ssv2a.js";

let session;
let generator;
let cancelled = false;

async function boot() {
  try {
    await init();
    session = await Session.create();
    postMessage({ type: "ready", info: session.info() });
  } catch (e) {
    postMessage({ type: "error", message: String(e.message ?? e) });
  }
}

onmessage = async ({ data }) => {
  if (data.type === "cancel") {
    cancelled = true; // polled by the running generation between rounds and steps
    return;
  }
  try {
    if (data.type === "check") {
      const [seconds, err] = await session.matmul_check(data.m, data.n, data.k, () => performance.now());
      const gflops = (2 * data.m * data.n * data.k) / seconds / 1e9;
      postMessage({
        type: "result",
        text: `matmul ${data.m}x${data.n}x${data.k} (fp16 weights): ${(seconds * 1e3).toFixed(1)} ms incl. readback, ` +
          `${gflops.toFixed(2)} GFLOP/s, max |error| vs CPU ${err.toExponential(1)}`,
      });
    } else if (data.type === "prompt") {
      generator ??= Generator.demo(session);
      cancelled = false;
      const t0 = performance.now();
      const progress = (stage, done, total) => postMessage({ type: "progress", stage, done, total });
      const out = await generator.generate_prompt(data.text, data.options, progress, () => cancelled);
      const wav = encode_wav(out.waveform, 16000);
      const cut = out.truncated ? " (truncated at 512 tokens, as AudioLDM does)" : "";
      postMessage({
        type: "audio", wav,
        text: `text to audio: ${out.tokens} tokens${cut}, ${(out.waveform.length / 16000).toFixed(2)} s of audio in ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s (random demo weights)`,
      }, [wav.buffer]);
    } else if (data.type === "generate") {
      generator ??= Generator.demo(session);
      cancelled = false;
      const t0 = performance.now();
      const progress = (stage, done, total) => postMessage({ type: "progress", stage, done, total });
      // PNG, JPEG and WebP files are decoded in wasm exactly as PIL decodes them (the official
      // pipeline's pixels); other images arrive as pixels the browser decoded.
      const wave = data.file
        ? await generator.generate_file(new Uint8Array(data.file), data.options, progress, () => cancelled)
        : await generator.generate_image(new Uint8Array(data.rgba), data.width, data.height, data.options, progress, () => cancelled);
      const wav = encode_wav(wave, 16000);
      postMessage({
        type: "audio", wav,
        text: `generated ${(wave.length / 16000).toFixed(2)} s of audio in ${((performance.now() - t0) / 1000).toFixed(1)} s (random demo weights)`,
      }, [wav.buffer]);
    }
  } catch (e) {
    postMessage({ type: "error", message: String(e.message ?? e) });
  }
};

boot();
