// Owns the wasm instance and the WebGPU device; talks to the page with messages.
import init, { Session } from "./pkg/ssv2a.js";

let session;

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
  try {
    if (data.type === "check") {
      const [seconds, err] = await session.matmul_check(data.m, data.n, data.k, () => performance.now());
      const gflops = (2 * data.m * data.n * data.k) / seconds / 1e9;
      postMessage({
        type: "result",
        text: `matmul ${data.m}x${data.n}x${data.k} (fp16 weights): ${(seconds * 1e3).toFixed(1)} ms incl. readback, ` +
          `${gflops.toFixed(2)} GFLOP/s, max |error| vs CPU ${err.toExponential(1)}`,
      });
    }
  } catch (e) {
    postMessage({ type: "error", message: String(e.message ?? e) });
  }
};

boot();
