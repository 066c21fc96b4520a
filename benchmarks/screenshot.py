"""A screenshot of TensorBoard on a short run of each demo, for the README (not run by CI).

    apt-get install chromium              # Debian's headless browser
    python benchmarks/screenshot.py --out benchmarks/results/tensorboard.png

Trains both demos briefly into a temporary folder, starts TensorBoard on it, and asks
headless Chromium for a picture of the page.
"""

import argparse
import contextlib
import io
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

FLAGS = ["--epochs", "400", "--solver", "proximal", "--group", "0.003", "--lr", "0.01",
         "--no-show"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/tensorboard.png")
    parser.add_argument("--view", default="#custom_scalars",
                        help="the part of the address after the port (the Time Series page "
                        "draws nothing in headless Chromium; Custom Scalars does)")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("error: no chromium on this machine: apt-get install chromium")
    import demo_keras
    import demo_tensorflow

    with tempfile.TemporaryDirectory() as logdir:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            demo_tensorflow.main(FLAGS + ["--logdir", logdir])
            demo_keras.main(FLAGS + ["--logdir", logdir])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(60):
                time.sleep(1)
                with contextlib.suppress(OSError):
                    if len(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs").read()) > 4:
                        break
            subprocess.run([browser, "--headless", "--no-sandbox", "--use-angle=swiftshader",
                            "--enable-unsafe-swiftshader",
                            "--hide-scrollbars", "--window-size=1100,460",
                            "--virtual-time-budget=20000", f"--screenshot={Path(args.out).resolve()}",
                            f"http://127.0.0.1:{port}/{args.view}"],
                           check=True, capture_output=True, timeout=120)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
