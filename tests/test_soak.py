"""The studio as a user runs it: `deepdream studio` in a process of its own on a free 127.0.0.1 port.

Many small dreams through `/dream` from two gradio_client clients at once, with the growth of the server's
resident memory bounded after warm-up (finished jobs used to keep their preview tensors for ever); a failed
job's traceback in the library's log while the client gets one line; a busy or impossible port refused in
one line. `benchmarks/studio.py --soak` runs the same loop longer and prints the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import free_port, synthetic_photo

STARTUP_S = 240  # a cold start imports torch and Gradio; on a loaded 2-core machine that takes a while


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS in /proc/PID/status), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_studio(library: Path, runs: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`deepdream studio` on a free loopback port, one intra-op thread; returns (process, URL) once it serves.
    Its terminal output (a line per job) goes to `library`.stderr beside the library, never into a full pipe."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    library.parent.mkdir(parents=True, exist_ok=True)
    with open(library.with_suffix(".stderr"), "w") as terminal:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepdream",
                "studio",
                "--port",
                str(port),
                "--library",
                str(library),
                "--runs",
                str(runs),
            ],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env=env,
        )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(STARTUP_S)
    if not lines or not lines[0].startswith("deepdream studio: http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise AssertionError(f"the studio did not start: {lines} {library.with_suffix('.stderr').read_text()}")
    return proc, f"http://127.0.0.1:{port}/"


def stop_studio(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def connect(url: str, downloads: Path, clients: int = 2) -> list:
    """`clients` gradio_client clients of the studio at `url` (each a Gradio session of its own)."""
    from gradio_client import Client

    return [Client(url, verbose=False, download_files=str(downloads / f"client{i}")) for i in range(clients)]


def soak(
    clients: list, photo: Path, dreams: int, settings: dict, after_each: Callable[[int], None] | None = None
) -> float:
    """`dreams` dreams of `photo` through /dream from each client at once (seeds differ);
    `after_each(count)` runs after every finished dream. Returns the wall seconds."""
    from gradio_client import handle_file

    done, lock, errors = [0], threading.Lock(), []

    def client_loop(index: int) -> None:
        try:
            for i in range(dreams):
                values = {**settings, "seed": index * 100_000 + i}
                clients[index].predict(handle_file(str(photo)), json.dumps(values), None, api_name="/dream")
                with lock:
                    done[0] += 1
                    if after_each:
                        after_each(done[0])
        except Exception as exc:  # reported by the caller, with the client that met it
            errors.append(f"client {index}: {exc!r}")

    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError("; ".join(errors))
    return time.perf_counter() - began


# a 384 px photo, one octave of one step: well under a second per dream, yet a job that kept its preview
# tensor (384 x 384 x 3 float32, 1.7 MB) would show in the server's memory, and so would the C heap's freed
# pages if they were not handed back
SOAK_SETTINGS = {"octaves": 1, "iterations": 1, "jitter": 0, "device": "cpu"}
SOAK_PX = 384
WARMUP, DREAMS = 3, 16  # per client
GROWTH_MB = 24.0  # after warm-up; keeping every preview alone would add 2 x 16 x 1.7 = 54 MB
IDLE_S = 1.0  # before reading the memory: what the server keeps, not a request's working memory


@pytest.fixture(scope="module")
def studio_process(tmp_path_factory):
    pytest.importorskip("gradio", reason="the studio extra is not installed (pip install -e '.[studio]')")
    pytest.importorskip("gradio_client")
    root = tmp_path_factory.mktemp("soak")
    proc, url = start_studio(root / "library", root / "runs")
    yield proc, url, root
    stop_studio(proc)


def test_soak_two_clients_memory_stays_bounded(studio_process):
    proc, url, root = studio_process
    photo = root / "photo.png"
    synthetic_photo(SOAK_PX, SOAK_PX).save(photo)
    clients = connect(url, root)
    soak(clients, photo, WARMUP, SOAK_SETTINGS)  # network loaded, allocator and HTTP pools warmed
    time.sleep(IDLE_S)
    start = rss_mb(proc.pid)
    samples: list[float] = []
    seconds = soak(clients, photo, DREAMS, SOAK_SETTINGS, after_each=lambda n: samples.append(rss_mb(proc.pid)))
    time.sleep(IDLE_S)
    end = rss_mb(proc.pid)
    saved = len(list((root / "library" / "results").glob("*.png")))
    print(
        f"soak: {2 * DREAMS} dreams in {seconds:.1f} s; server RSS {start:.0f} MB after warm-up, "
        f"{end:.0f} MB after (peak {max(samples):.0f} MB while dreaming)"
    )
    assert saved == 2 * (WARMUP + DREAMS)  # every dream really ran and was saved
    assert end - start < GROWTH_MB, samples


def test_failed_job_traceback_goes_to_the_log_and_one_line_to_the_client(studio_process):
    from gradio_client import Client, handle_file

    proc, url, root = studio_process
    photo = root / "small.png"
    synthetic_photo(64, 48).save(photo)
    client = Client(url, verbose=False, download_files=str(root / "failing"))
    with pytest.raises(Exception) as caught:
        client.predict(
            handle_file(str(photo)), json.dumps({**SOAK_SETTINGS, "layers": "no.such.layer"}), None, api_name="/dream"
        )
    message = str(caught.value)
    assert "no.such.layer" in message and "Traceback" not in message and "\n" not in message.strip()
    log = (root / "library" / "logs" / "studio.log").read_text()
    failed = log[log.index("failed: ") :]
    assert "no.such.layer" in failed and "Traceback (most recent call last)" in failed
    assert "ModelError" in failed  # the real exception, with the frames that raised it


def test_busy_port_and_impossible_port_get_one_line(studio_process):
    proc, url, root = studio_process
    busy = int(url.rstrip("/").rsplit(":", 1)[1])
    code = (
        "import sys, deepdream.cli as c\n"
        f"for port in ('{busy}', '70000'):\n"
        f"    try:\n"
        f"        print(c.main(['studio', '--port', port, '--library', {str(root / 'other')!r}]), flush=True)\n"
        f"    except SystemExit as exit:\n"
        f"        print(exit.code, flush=True)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split() == ["1", "2"], r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert f"port {busy} is already in use on 127.0.0.1" in lines[0]
    assert "between 1 and 65535" in lines[1] and "70000" in lines[1]
    assert proc.poll() is None  # the studio already there keeps serving
