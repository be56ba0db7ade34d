"""Manual check of the web page through chromedriver (not CI): serve web/ on 127.0.0.1, open the
page in headless Chromium (SwiftShader WebGPU), optionally choose an image file, press Generate
and wait for audio or an error. Prints the page's log and the time taken.

    scripts/build-web.sh
    python3 scripts/web_check.py [--image tests/fixtures/images/photo_203x200.jpg] [--timeout 900]

Needs chromium and chromium-driver (scripts/setup.sh installs them); plain Python 3, no packages.
"""

import argparse
import functools
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--chromium", default="/usr/lib/chromium/chromium")
    a = ap.parse_args()

    web_port, drv_port = free_port(), free_port()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(ROOT / "web"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", web_port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    drv = subprocess.Popen(["chromedriver", f"--port={drv_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{drv_port}"

    def call(method, path, body=None):
        req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    try:
        for _ in range(50):
            try:
                call("GET", "/status")
                break
            except OSError:
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": a.chromium, "args": ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
                                           "--enable-features=Vulkan", "--use-angle=swiftshader"]}}}}
        sid = call("POST", "/session", caps)["sessionId"]
        s = f"/session/{sid}"
        call("POST", s + "/url", {"url": f"http://127.0.0.1:{web_port}/"})

        def js(src):
            return call("POST", s + "/execute/sync", {"script": src, "args": []})

        t0 = time.time()
        while js("return document.getElementById('generate').disabled") and time.time() - t0 < 120:
            time.sleep(0.5)
        print("page:", js("return document.getElementById('log').textContent"))
        if a.image:
            el = call("POST", s + "/element", {"using": "css selector", "value": "#image"})
            eid = next(iter(el.values()))
            call("POST", f"{s}/element/{eid}/value", {"text": str(Path(a.image).resolve())})
        t0 = time.time()
        js("document.getElementById('generate').click()")
        last = ""
        while time.time() - t0 < a.timeout:
            title = js("return document.title")
            stage = js("return document.getElementById('stage').textContent")
            if stage != last:
                print(f"{time.time() - t0:7.1f} s  {stage}")
                last = stage
            if title in ("done", "error") and not js("return document.getElementById('generate').disabled"):
                break
            time.sleep(1)
        print("log:", js("return document.getElementById('log').textContent"))
        print("audio src set:", bool(js("return document.getElementById('audio').src")), f"after {time.time() - t0:.1f} s")
        call("DELETE", s)
    finally:
        drv.terminate()
        httpd.shutdown()


if __name__ == "__main__":
    main()
