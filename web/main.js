// UI only: the worker owns the wasm instance and the GPU device.
const log = document.getElementById("log");
const button = document.getElementById("check");
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });

worker.onmessage = ({ data }) => {
  if (data.type === "ready") {
    log.textContent = data.info;
    button.disabled = false;
  } else if (data.type === "result") {
    log.textContent += "\n" + data.text;
    button.disabled = false;
  } else if (data.type === "error") {
    log.textContent += "\nerror: " + data.message;
    button.disabled = false;
  }
  document.title = data.type === "error" ? "error" : "done";
};

button.onclick = () => {
  button.disabled = true;
  worker.postMessage({ type: "check", m: 256, n: 256, k: 256 });
};
