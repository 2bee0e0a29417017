"""Batches: inputs expand into a mirrored tree with path-derived seeds; the manifest skips finished items,
redoes interrupted ones and keeps failures; 2 local workers, and Ray actors on a loopback cluster (one
killed mid-batch), give the pixels and the manifest of 1 worker."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import synthetic_photo
from deepdream import Settings, dream, locks
from deepdream.batch import (
    BatchJob,
    LocalExecutor,
    Manifest,
    RayExecutor,
    VideoOptions,
    expand_inputs,
    plan_batch,
    run_batch,
)
from deepdream.batch.segments import crossfade_weights, seam_jumps, split, stitch
from deepdream.errors import DeepDreamError, OutputError, SettingsError
from deepdream.video.reading import read_frames

TINY = Settings(octaves=1, iterations=2, seed=3)
JOB = BatchJob(TINY)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PHOTOS = ["a.png", "b.jpg", "sub/c.png", "sub/d.png", "sub/deeper/e.png", "f.webp"]
VOLATILE = ("seconds", "worker", "updated", "source", "output")  # differ between runs and folders by nature
RECORDS = ("manifest.sqlite", "batch.log")  # what a batch writes besides its outputs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Six tiny photos in a tree, one corrupt file, and a text file that is not an input."""
    root = tmp_path_factory.mktemp("batch") / "photos"
    for i, rel in enumerate(PHOTOS):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(64, 48, seed=i).save(root / rel)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (root / "notes.txt").write_text("not a picture")
    return root


@pytest.fixture(scope="module")
def reference(photos) -> Path:
    """The batch with one local worker: what every other way of running it must reproduce."""
    out = photos.parent / "out-1"
    summary = run_batch([photos], out, JOB, executor=LocalExecutor(1))
    assert (summary.done, summary.skipped, summary.failed) == (6, 0, 1)
    assert "corrupt" in summary.errors["broken.jpg"]
    return out


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def assert_same_outputs(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name not in RECORDS)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name not in RECORDS)
    assert len(files) == len(PHOTOS)
    for rel in files:
        assert np.array_equal(pixels(a / rel), pixels(b / rel)), rel


def manifest_rows(out: Path) -> list[dict]:
    with Manifest(out / "manifest.sqlite") as manifest:
        rows = [vars(r) for r in manifest.records()]
    return [
        {k: v for k, v in row.items() if k not in VOLATILE} | {"output": Path(row["output"]).relative_to(out)}
        for row in rows
    ]


# ------------------------------------------------------------------------------------------ planning


def test_plan_mirrors_the_tree_with_path_seeds(photos, tmp_path):
    items = plan_batch([photos], tmp_path / "out", JOB)
    assert [i.relpath for i in items] == sorted([*PHOTOS, "broken.jpg"])  # notes.txt is not an input
    b = next(i for i in items if i.relpath == "b.jpg")
    assert b.output == tmp_path / "out" / "b.jpg" and b.kind == "image"
    # a glob mirrors the tree below its literal part; a named file keeps its name
    globbed = plan_batch([str(photos / "sub" / "**" / "*.png")], tmp_path / "o", JOB)
    assert [i.relpath for i in globbed] == ["c.png", "d.png", "deeper/e.png"]
    assert [i.relpath for i in plan_batch([photos / "sub" / "c.png"], tmp_path / "o", JOB)] == ["c.png"]
    # the seed depends on the base seed and the relative path only: not on order or the other inputs
    by_path = {i.relpath: i.seed for i in items}
    assert len(set(by_path.values())) == len(items)
    alone = plan_batch([str(photos / "sub" / "**" / "*.png")], tmp_path / "o", BatchJob(TINY))
    again = {i.relpath: i.seed for i in plan_batch([photos / "sub"], tmp_path / "o", JOB)}
    assert {i.relpath: i.seed for i in alone} == again
    other = plan_batch([photos], tmp_path / "out", BatchJob(TINY.replace(seed=4)))
    assert all(o.seed != by_path[o.relpath] for o in other)
    # settings decide the hash; the format option changes outputs
    changed = plan_batch([photos], tmp_path / "out", BatchJob(TINY.replace(iterations=3)))
    assert all(c.settings_hash != i.settings_hash for c, i in zip(changed, items))
    as_png = plan_batch([photos], tmp_path / "out", BatchJob(TINY, image_format=".png"))
    assert {i.output.suffix for i in as_png} == {".png"}


def test_plan_errors(photos, tmp_path):
    with pytest.raises(SettingsError, match="no such file"):
        plan_batch([photos / "missing"], tmp_path, JOB)
    with pytest.raises(SettingsError, match="no files match"):
        plan_batch([str(photos / "*.nothing")], tmp_path, JOB)
    # two inputs that would write one output; the same file named twice is one item
    other = tmp_path / "elsewhere" / "c.png"
    other.parent.mkdir()
    synthetic_photo(64, 48).save(other)
    with pytest.raises(SettingsError, match="both map to c.png"):
        plan_batch([photos / "sub", other], tmp_path / "out", JOB)
    assert len(plan_batch([photos / "sub", photos / "sub" / "c.png"], tmp_path / "out", JOB)) == 3
    with pytest.raises(SettingsError, match="would both write"):
        synthetic_photo(64, 48).save(other.with_name("a.jpg"))
        plan_batch([photos / "a.png", other.with_name("a.jpg")], tmp_path / "out", BatchJob(TINY, image_format=".png"))
    # the output folder inside an input folder is not read back as input
    inside = expand_inputs([photos], exclude=photos / "sub")
    assert all(not rel.startswith("sub/") for _, rel in inside)


# ------------------------------------------------------------------------------------------ local


def test_local_batch_outputs_resume_and_manifest(photos, reference, lite0):
    rows = manifest_rows(reference)
    assert [r["status"] for r in rows] == ["done" if r["relpath"] != "broken.jpg" else "failed" for r in rows]
    assert all(r["attempts"] == 1 for r in rows)
    # each output is the plain dream of its file with the seed the batch derived for it
    a = next(r for r in rows if r["relpath"] == "sub/c.png")
    single = dream(photos / "sub" / "c.png", settings=TINY.replace(seed=a["seed"]), backbone=lite0)
    assert np.array_equal(pixels(reference / "sub" / "c.png"), np.asarray(single))
    # a re-run redoes nothing (the corrupt file is unchanged, so it is not retried) and rewrites no file
    stamps = {p: p.stat().st_mtime_ns for p in reference.rglob("*.*") if p.name not in RECORDS}
    seen = []
    again = run_batch([photos], reference, JOB, on_start=lambda item, worker: seen.append(item.relpath))
    assert (again.done, again.skipped, again.failed, seen) == (0, 6, 1, [])
    assert stamps == {p: p.stat().st_mtime_ns for p in reference.rglob("*.*") if p.name not in RECORDS}


def test_interrupted_items_are_redone_and_force_redoes_all(photos, tmp_path):
    out = tmp_path / "out"
    inputs = [photos / "a.png", photos / "b.jpg"]
    assert run_batch(inputs, out, JOB).done == 2
    item = next(i for i in plan_batch(inputs, out, JOB) if i.relpath == "b.jpg")
    with Manifest(out / "manifest.sqlite") as manifest:
        manifest.started(item)  # as a batch killed while dreaming it leaves it
    seen = []
    summary = run_batch(inputs, out, JOB, on_start=lambda item, worker: seen.append(item.relpath))
    assert (summary.done, summary.skipped, seen) == (1, 1, ["b.jpg"])
    assert run_batch(inputs, out, JOB, force=True).done == 2


def test_two_local_workers_match_one(photos, reference):
    out = photos.parent / "out-2"
    summary = run_batch([photos], out, JOB, executor=LocalExecutor(2))
    assert (summary.done, summary.failed) == (6, 1)
    assert_same_outputs(reference, out)
    assert manifest_rows(out) == manifest_rows(reference)


def test_a_local_worker_process_that_dies_has_its_items_retried(photos, reference, tmp_path):
    killed: list[int] = []

    def kill_a_worker(item, worker):
        # SIGKILL one pool process while it holds an item: the pool is started again and the items retried
        pool = [p for p in multiprocessing.active_children() if p.name.startswith("SpawnProcess")]
        if item.relpath == "b.jpg" and pool and not killed:
            killed.append(pool[0].pid)
            os.kill(pool[0].pid, 9)

    out = tmp_path / "out"
    summary = run_batch([photos], out, JOB, executor=LocalExecutor(2), on_start=kill_a_worker)
    assert killed and (summary.done, summary.failed) == (6, 1), (killed, summary.errors)
    assert_same_outputs(reference, out)
    assert [r["status"] for r in manifest_rows(out)] == [r["status"] for r in manifest_rows(reference)]


def test_cli_batch_summary_and_exit_code(photos, tmp_path):
    args = [photos / "a.png", photos / "broken.jpg", "-o", tmp_path / "out", "--octaves", "1", "--iterations", "2",
            "--seed", "3", "--format", "png", "-q"]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "deepdream", "batch", *map(str, args)], capture_output=True, text=True,
                         env=ENV, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "batch: 1 done, 0 skipped, 1 failed" in run.stderr
    assert "failed broken.jpg: " in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "out" / "a.png").is_file()


def test_the_callers_thread_count_does_not_change_the_pixels(photos, reference, tmp_path):
    # the in-process path dreams with the job's threads (1), as pool workers and Ray actors do, whatever the caller
    # set; CPU sums split per thread, so before this fix 2 threads here gave other pixels than 2 workers
    torch.set_num_threads(2)
    try:
        summary = run_batch([photos], tmp_path / "out", JOB, executor=LocalExecutor(1))
        assert torch.get_num_threads() == 2  # and the caller's count is put back
    finally:
        torch.set_num_threads(1)
    assert (summary.done, summary.failed) == (6, 1)
    assert_same_outputs(reference, tmp_path / "out")


def test_failed_items_leave_their_traceback_in_the_log(reference):
    text = (reference / "batch.log").read_text()
    assert "failed broken.jpg" in text and "Traceback (most recent call last)" in text and "open_image" in text
    assert "done sub/c.png" in text


# ------------------------------------------------------------------------------------------ hostile input


def tree(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(40, 32).save(root / name)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_every_refusal_comes_before_anything_is_created(tmp_path, monkeypatch):
    """Each bad batch raises one DeepDreamError, creates no output folder, manifest, log or lock, and leaves
    its inputs byte-identical."""
    src = tree(tmp_path / "in", "a.png", "sub/b.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "mask.png").write_text("not a picture")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": "deepdream-classifier", "x": _Evil()}))
    (tmp_path / "link").symlink_to(src)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    out = tmp_path / "out"
    cases = {
        "output is a link loop": ([src], tmp_path / "loop" / "out", JOB, "cannot resolve"),
        "no match": ([str(src / "*.nothing")], out, JOB, "no files match"),
        "bad pattern": ([str(src / "a**b" / "*.png")], out, JOB, "cannot expand the pattern"),
        "empty folder": ([tmp_path / "empty"], out, JOB, "no images or videos"),
        "missing": ([tmp_path / "missing"], out, JOB, "no such file"),
        "bad mask": ([src], out, BatchJob(TINY.replace(mask=str(tmp_path / "mask.png"))), "mask.png"),
        "evil checkpoint": ([src], out, BatchJob(TINY.replace(checkpoint=str(tmp_path / "evil.pt"))), "evil.pt"),
        "bad layer": ([src], out, BatchJob(TINY.replace(layers="blocks.99")), "blocks.99"),
        "threads": ([src], out, BatchJob(TINY, threads=0), "threads"),
        "output is the input": ([src], src, JOB, "is the input folder"),
        "output is a link to the input": ([src], tmp_path / "link", JOB, "is the input folder"),
        "glob into its own folder": ([str(src / "*.png")], src, JOB, "is the input folder"),
        "output over an input": ([src / "a.png"], src, JOB, "would overwrite the input"),
    }
    before = snapshot(tmp_path)
    for name, (inputs, outdir, job, message) in cases.items():
        with pytest.raises(DeepDreamError, match=message):
            run_batch(inputs, outdir, job)
        assert not out.exists() and snapshot(tmp_path) == before, name
    with pytest.raises(DeepDreamError, match="at most 4 per core"):
        run_batch([src], out, JOB, executor=LocalExecutor(100_000))  # a typo must not start 100,000 processes
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(DeepDreamError, match="--ray needs Ray"):
        run_batch([src], out, JOB, executor=RayExecutor())
    assert not out.exists() and snapshot(tmp_path) == before
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_damaged_or_foreign_manifest_is_refused_untouched(tmp_path):
    src = tree(tmp_path / "in", "a.png")
    out = tmp_path / "out"
    assert run_batch([src], out, JOB).done == 1
    good = (out / "manifest.sqlite").read_bytes()

    def damage(sql: str, *args) -> None:
        (out / "manifest.sqlite").write_bytes(good)
        db = sqlite3.connect(out / "manifest.sqlite")
        with db:
            db.execute(sql, args)
        db.close()

    cases = {
        "garbage seed": ("UPDATE meta SET value = 'x' WHERE key = 'base_seed'", "base seed 'x'"),
        "seed out of range": ("UPDATE meta SET value = '-5' WHERE key = 'base_seed'", "base seed '-5'"),
        "another version": ("ALTER TABLE items ADD COLUMN extra TEXT", "columns"),
        "another format": ("UPDATE meta SET value = 'deepdream-batch-9' WHERE key = 'format'", "format"),
        "seed of a wrong type": ("UPDATE items SET seed = 'seven'", "seed = 'seven'"),
        "attempts of a wrong type": ("UPDATE items SET attempts = 1.5", "attempts = 1.5"),
        "unknown status": ("UPDATE items SET status = 'maybe'", "status 'maybe'"),
        "foreign tables": ("CREATE TABLE other (x)", "tables"),
    }
    for name, (sql, message) in cases.items():
        damage(sql)
        damaged = (out / "manifest.sqlite").read_bytes()
        with pytest.raises(OutputError, match=message):
            run_batch([src], out, JOB)
        assert (out / "manifest.sqlite").read_bytes() == damaged, name
    (out / "manifest.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(OutputError, match="not a database"):
        run_batch([src], out, JOB)


def test_odd_names_and_link_loops(tmp_path, lite0):
    src = tree(tmp_path / "in", "a.png")
    raw = os.fsencode(src) + b"/caf\xe9.png"  # Latin-1, not UTF-8: one such name aborted the whole batch
    synthetic_photo(40, 32, seed=5).save(os.fsdecode(raw))
    (src / "loop").symlink_to(src)  # in/loop/loop/loop/... never ends if followed
    assert sorted(rel for _, rel in expand_inputs([src])) == sorted(["a.png", os.fsdecode(b"caf\xe9.png")])
    assert len(plan_batch([str(src / "**" / "*.png")], tmp_path / "o", JOB)) == 2
    summary = run_batch([src], tmp_path / "out", JOB)
    assert (summary.done, summary.failed) == (2, 0), summary.errors
    with Manifest(tmp_path / "out" / "manifest.sqlite") as manifest:
        row = manifest.get(os.fsdecode(b"caf\xe9.png"))
    assert row.relpath == "caf\\xe9.png" and row.status == "done"
    assert os.path.exists(os.fsencode(tmp_path / "out") + b"/caf\xe9.png")
    again = run_batch([src], tmp_path / "out", JOB)  # the escaped key finds its row: nothing is redone
    assert (again.done, again.skipped) == (0, 2)


def test_two_batches_on_one_output_folder(tmp_path):
    src = tree(tmp_path / "in", "a.png")
    out = tmp_path / "out"
    out.mkdir()
    with locks.acquire(out / "manifest.sqlite"):  # a live run holds the folder (this process's pid)
        with pytest.raises(OutputError, match="in use by another deepdream run"):
            run_batch([src], out, JOB)
        assert sorted(p.name for p in out.iterdir()) == [".manifest.sqlite.lock"]
    assert run_batch([src], out, JOB).done == 1
    assert not (out / ".manifest.sqlite.lock").exists()


def test_cli_refusals_are_one_line(photos, tmp_path):
    """The CLI in a subprocess: a refused batch prints one line, exits 1, writes nothing, changes no input."""
    src = tree(tmp_path / "in", "a.png")
    (tmp_path / "mask.txt").write_text("no")
    before = snapshot(tmp_path)
    for args, message in ([[src, "-o", src], "is the input folder"],
                          [[src, "-o", tmp_path / "out", "--mask", tmp_path / "mask.txt"], "mask.txt"]):  # fmt: skip
        run = subprocess.run([sys.executable, "-m", "deepdream", "batch", *map(str, args), "-q"], capture_output=True,
                             text=True, env=ENV, timeout=300)  # fmt: skip
        assert run.returncode == 1 and message in run.stderr, run.stderr
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("deepdream: error:"), run.stderr
        assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ Ray


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses of the TCP sockets these processes listen on (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1].rsplit(":", 1)[0])
    return found


def loopback(hex_address: str) -> bool:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return raw[::-1][0] == 127
    v4 = raw[12:16] if raw[:12] == bytes.fromhex("0000000000000000FFFF0000") else None
    return (v4 is not None and v4[::-1][0] == 127) or raw == bytes(15) + b"\x01"


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU Ray cluster on 127.0.0.1 started for these tests and stopped after them."""
    for key in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        os.environ[key] = ENV[key]  # before ray is imported: with cluster mode off, Ray binds loopback only
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'deepdream[ray]')")
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                       configure_logging=False)  # fmt: skip
    try:
        # all traffic stays on the loopback interface: the node, the GCS, and every socket Ray listens on
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        assert context.address_info["gcs_address"].startswith("127.0.0.1:")
        sockets = listening_addresses(descendants(os.getpid()))
        assert sockets and all(loopback(a) for a in sockets), sockets
        yield ray, context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def test_ray_matches_local_and_retries_a_killed_actor(photos, reference, ray_cluster):
    ray, _ = ray_cluster
    out = photos.parent / "out-ray"
    killed: list[str] = []

    def kill_first_photo_worker(item, worker):
        # os.kill of the actor's process while it holds an item: Ray restarts it and the item is retried
        if item.relpath == "b.jpg" and not killed:
            killed.append(worker)
            os.kill(int(worker.rsplit(":", 1)[1]), 9)

    summary = run_batch([photos], out, JOB, executor=RayExecutor(workers=2), on_start=kill_first_photo_worker)
    assert (summary.done, summary.skipped, summary.failed) == (6, 0, 1), summary.errors
    assert killed and ray.is_initialized()  # the executor used the test's cluster and left it running
    assert_same_outputs(reference, out)
    assert manifest_rows(out) == manifest_rows(reference)
    with Manifest(out / "manifest.sqlite") as manifest:
        assert manifest.get("b.jpg").worker not in (killed[0], None)  # finished by a new process
    seen = []
    again = run_batch([photos], out, JOB, executor=RayExecutor(), on_start=lambda i, w: seen.append(i.relpath))
    assert (again.done, again.skipped, again.failed, seen) == (0, 6, 1, [])


def test_cli_batch_on_a_ray_address(photos, ray_cluster, tmp_path):
    _, address = ray_cluster
    out = tmp_path / "out"
    (tmp_path / "in").mkdir()
    for name in ("a.png", "broken.jpg"):
        shutil.copy(photos / name, tmp_path / "in" / name)
    args = [tmp_path / "in", "-o", out, "--ray", address, "--workers", "1", "--octaves", "1", "--iterations", "2",
            "--seed", "3", "-q"]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "deepdream", "batch", *map(str, args)], capture_output=True, text=True,
                         env=ENV, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "batch: 1 done, 0 skipped, 1 failed" in run.stderr and "Ray (127.0.0.1:" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "batch.log", "manifest.sqlite"]


# ------------------------------------------------------------------------------------------ segments


def test_split_covers_every_frame_once_plus_lead_ins():
    segments = split(50, 4, 6, Fraction(25))
    assert [(s.first, s.stop, s.lead) for s in segments] == [(0, 12, 0), (6, 25, 6), (19, 38, 6), (32, 50, 6)]
    assert segments[1].start == pytest.approx(6 / 25) and segments[1].duration == pytest.approx(19 / 25)
    # the lead-in never reaches past the previous segment's own frames; never more segments than frames
    assert [(s.first, s.stop, s.lead) for s in split(6, 3, 5, Fraction(25))] == [(0, 2, 0), (0, 4, 2), (2, 6, 2)]
    assert len(split(2, 8, 1, Fraction(25))) == 2


def test_stitch_crossfades_the_lead_in():
    segments = split(10, 2, 3, Fraction(25))  # frames 0-4 and 2-9, lead-in 2, 3, 4
    a = [np.full((2, 2, 3), 10 * i, np.uint8) for i in range(5)]  # segment 0's dream of frames 0..4
    b = [np.full((2, 2, 3), 200, np.uint8) for _ in range(8)]  # segment 1's dream of frames 2..9
    out = list(stitch(segments, [iter(a), iter(b)]))
    assert len(out) == 10
    assert [int(f[0, 0, 0]) for f in out[:2]] == [0, 10]  # segment 0 alone
    w = crossfade_weights(3)  # 1/4, 2/4, 3/4: the new segment fades in
    assert [int(f[0, 0, 0]) for f in out[2:5]] == [round((1 - w[j]) * 10 * (j + 2) + w[j] * 200) for j in range(3)]
    assert all(int(f[0, 0, 0]) == 200 for f in out[5:])


def make_clip(path: Path, frames: int = 12, size=(64, 48), fps: int = 12) -> Path:
    """A square moving right 3 px per frame over a smooth background (no audio)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 255 // w, yy * 255 // h, 128 + 60 * np.sin(xx / 5.0)], -1).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = background.copy()
            img[h // 3 : h // 3 + 16, 4 + 3 * i : 20 + 3 * i] = (250, 220, 30)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


# GIF output: Pillow's encoder is deterministic (libx264 with several threads is not, on a loaded machine)
SEGMENTED = BatchJob(TINY, VideoOptions(segments=3, overlap=2, format=".gif"))


@pytest.fixture(scope="module")
def segmented(tmp_path_factory) -> tuple[Path, Path]:
    """A 12-frame clip dreamed in 3 segments by one local worker: (clip, output folder)."""
    root = tmp_path_factory.mktemp("segments")
    (root / "in").mkdir()
    clip = make_clip(root / "in" / "clip.mp4")
    summary = run_batch([clip], root / "out", SEGMENTED)
    assert (summary.done, summary.failed) == (1, 0), summary.errors
    return clip, root / "out"


def test_segmented_video_keeps_every_frame_in_order(segmented):
    clip, out = segmented
    source, dreamed = list(read_frames(clip)), list(read_frames(out / "clip.gif"))
    assert len(dreamed) == len(source) == 12
    # every output frame is closest to its own input frame: none lost, doubled or shifted at the seams
    nearest = [int(np.argmin([np.abs(d.astype(int) - s).mean() for s in source])) for d in dreamed]
    assert nearest == list(range(12))
    assert not (out / ".segments").exists()  # segment frames are removed once stitched
    seams, inside = seam_jumps(dreamed, split(12, 3, 2, Fraction(12)))
    assert len(seams) == 6 and len(inside) == 5


def test_ray_segments_in_parallel_match_local(segmented, ray_cluster, tmp_path):
    clip, local = segmented
    workers: set[str] = set()
    summary = run_batch([clip], tmp_path / "out", SEGMENTED, executor=RayExecutor(workers=2),
                        on_start=lambda item, worker: workers.add(worker))  # fmt: skip
    assert (summary.done, summary.failed) == (1, 0), summary.errors
    assert len(workers) == 2  # the segments went to both actors
    dreamed, reference = list(read_frames(tmp_path / "out" / "clip.gif")), list(read_frames(local / "clip.gif"))
    assert len(dreamed) == len(reference) and all(np.array_equal(a, b) for a, b in zip(dreamed, reference))
