// UI only: the worker owns the wasm instance and the GPU device.
const log = document.getElementById("log");
const check = document.getElementById("check");
const generate = document.getElementById("generate");
const generatePrompt = document.getElementById("generate-prompt");
const cancel = document.getElementById("cancel");
const stage = document.getElementById("stage");
const bar = document.getElementById("bar");
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });

function idle() {
  check.disabled = false;
  generate.disabled = false;
  generatePrompt.disabled = false;
  cancel.disabled = true;
}

worker.onmessage = ({ data }) => {
  if (data.type === "ready") {
    log.textContent = data.info;
    idle();
  } else if (data.type === "progress") {
    stage.textContent = `${data.stage} ${data.done}/${data.total} `;
    bar.max = Math.max(1, data.total);
    bar.value = data.done;
  } else if (data.type === "result") {
    log.textContent += "\n" + data.text;
    idle();
  } else if (data.type === "audio") {
    document.getElementById("audio").src = URL.createObjectURL(new Blob([data.wav], { type: "audio/wav" }));
    log.textContent += "\n" + data.text;
    idle();
  } else if (data.type === "error") {
    log.textContent += "\nerror: " + data.message;
    idle();
  }
  document.title = data.type === "error" ? "error" : data.type === "progress" ? "running" : "done";
};

check.onclick = () => {
  check.disabled = true;
  worker.postMessage({ type: "check", m: 256, n: 256, k: 256 });
};

// Whether the wasm side decodes this file (PNG, JPEG, WebP, by their signatures).
function decodedInWasm(h) {
  const png = h[0] === 0x89 && h[1] === 0x50 && h[2] === 0x4e && h[3] === 0x47;
  const jpeg = h[0] === 0xff && h[1] === 0xd8;
  const webp = String.fromCharCode(...h.slice(0, 4)) === "RIFF" && String.fromCharCode(...h.slice(8, 12)) === "WEBP";
  return png || jpeg || webp;
}

// Other images (GIF, BMP, AVIF, ...) are decoded by the browser and sent as RGBA pixels.
async function pixels() {
  const file = document.getElementById("image").files[0];
  const bitmap = file ? await createImageBitmap(file) : null;
  const w = bitmap ? bitmap.width : 320, h = bitmap ? bitmap.height : 240;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d");
  if (bitmap) {
    ctx.drawImage(bitmap, 0, 0);
  } else {
    // No file chosen: a simple synthetic scene.
    ctx.fillStyle = "#7fb0ea"; ctx.fillRect(0, 0, w, h * 0.6);
    ctx.fillStyle = "#464650"; ctx.fillRect(0, h * 0.6, w, h * 0.4);
    ctx.fillStyle = "#c81e28"; ctx.fillRect(w * 0.3, h * 0.66, w * 0.2, h * 0.1);
  }
  return { data: ctx.getImageData(0, 0, w, h).data, w, h };
}

generate.onclick = async () => {
  generate.disabled = true;
  generatePrompt.disabled = true;
  check.disabled = true;
  cancel.disabled = false;
  const options = JSON.stringify({ preset: document.getElementById("preset").value });
  const file = document.getElementById("image").files[0];
  if (file && decodedInWasm(new Uint8Array(await file.slice(0, 12).arrayBuffer()))) {
    // PNG, JPEG, WebP: the worker decodes the file itself, as PIL would.
    const bytes = await file.arrayBuffer();
    worker.postMessage({ type: "generate", file: bytes, options }, [bytes]);
    return;
  }
  const { data, w, h } = await pixels();
  worker.postMessage({ type: "generate", rgba: data, width: w, height: h, options }, [data.buffer]);
};

generatePrompt.onclick = () => {
  generate.disabled = true;
  generatePrompt.disabled = true;
  check.disabled = true;
  cancel.disabled = false;
  const options = JSON.stringify({ preset: document.getElementById("preset").value });
  worker.postMessage({ type: "prompt", text: document.getElementById("prompt").value, options });
};

cancel.onclick = () => worker.postMessage({ type: "cancel" });
