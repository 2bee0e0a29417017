"""The studio's Text tab through gradio_client: a tiny random model kept in the library, never a download."""

from __future__ import annotations

import json
import time

import pytest

from conftest import served

pytest.importorskip("transformers")
pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from deepdream.studio.library import Library  # noqa: E402
from deepdream.studio.service import Studio  # noqa: E402
from deepdream.studio.texttab import TextModels, submit  # noqa: E402
from test_text import MLP, tiny_model_folder  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    studio = Studio(Library(folder), runs=None)
    model = tiny_model_folder(studio.library.sub("uploads") / "tiny-llama")
    with served(studio) as (_, url):
        yield studio, url, model


def settings(model, **kw) -> str:
    values = dict(
        model=f"config:{model}", layer=MLP, neuron=3, length=5, iterations=3, population=3, children=4, topk=8, seed=2
    )
    values.update(kw)
    return json.dumps(values)


def test_api_text_saves_dreams_and_figure_in_the_library(server):
    studio, url, model = server
    client = gradio_client.Client(url, verbose=False)
    out, figure, status = client.predict(settings(model), api_name="/text")
    data = json.loads(open(out).read())
    assert data["settings"]["seed"] == 2 and data["frontier"]
    assert json.loads(status)["status"] == "done" and json.loads(status)["frontier"]
    saved = sorted(p.suffix for p in studio.library.sub("texts").iterdir())
    assert saved == [".json", ".png"]
    assert open(figure, "rb").read(4) == b"\x89PNG"


def test_api_text_refuses_files_outside_the_library_and_bad_settings(server):
    _, url, _ = server
    client = gradio_client.Client(url, verbose=False)
    for values, message in (
        (settings("/etc"), "outside the studio library"),
        (json.dumps({"model": "/etc/passwd.gguf", "layer": MLP}), "the studio dreams with"),
        (settings(server[2], population=0), "population"),
    ):
        with pytest.raises(Exception, match=message):
            client.predict(values, api_name="/text")


def test_cancelled_text_job_leaves_no_file(server):
    studio, _, model = server
    before = set(studio.library.sub("texts").iterdir()) if studio.library.sub("texts").exists() else set()
    task = submit(studio, TextModels(), json.loads(settings(model, iterations=100000)), owner="cancel-text")
    deadline = time.monotonic() + 60
    while task.job.done < 2 and not task.job.finished.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert task.live["rows"]  # the live frontier is there while it runs
    studio.jobs.cancel(owner="cancel-text", kind="text")
    assert task.job.finished.wait(60) and task.job.cancelled and task.job.result is None
    after = set(studio.library.sub("texts").iterdir()) if studio.library.sub("texts").exists() else set()
    assert after == before
