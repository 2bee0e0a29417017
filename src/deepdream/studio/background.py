"""Video and zoom jobs that outlive the page and the process.

Each job is a JSON record in the library's jobs/ folder and a frame cache in work/<id>/; the work is
`Studio.video`, which resumes from the frames already there, so a studio restarted after a crash or a
reboot picks every unfinished job up where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .. import imagefiles
from ..errors import DeepDreamError
from ..settings import Settings, from_mapping, seeded
from .jobs import Job
from .service import Studio

log = logging.getLogger(__name__)

UNFINISHED = ("queued", "running")


class VideoJobs:
    """Start, record and resume background video jobs of one studio."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self.folder = studio.library.sub("jobs")

    def _write(self, record: dict) -> None:
        path = self.folder / f"{record['id']}.json"
        imagefiles.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))

    def records(self) -> list[dict]:
        """Every job's record, newest first."""
        out = []
        for path in self.folder.glob("*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(record, dict) and {"id", "kind", "state", "output", "settings", "params"} <= set(record):
                out.append(record)
        return sorted(out, key=lambda r: r.get("created", 0), reverse=True)

    def start(self, kind: str, source: str | Path | None, settings: Settings, params: dict[str, Any]) -> dict:
        """Record and queue a job: kind 'video' (source a clip) or 'zoom' (a still, or None for noise)."""
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.studio.check_files(settings)
        settings = seeded(settings)  # one seed for every frame, also after a restart
        kept = None
        if source is not None:  # a copy (a hard link where possible) the job can still read after a restart
            kept = self.studio.library.sub("uploads") / f"{job_id}{Path(source).suffix.lower()}"
            try:
                os.link(self.studio.library.inside(source), kept)
            except OSError:
                shutil.copyfile(source, kept)
        record = {
            "id": job_id,
            "kind": kind,
            "source": str(kept) if kept else None,
            "settings": settings.to_dict(),
            "params": params,
            "state": "queued",
            "created": time.time(),
            "message": "",
            "output": str(self.studio.library.sub("videos") / f"{job_id}.mp4"),
        }
        self._write(record)
        self._submit(record)
        return record

    def resume_unfinished(self) -> list[str]:
        """Queue again every job a previous studio process left unfinished; returns their ids."""
        ids = []
        for record in self.records():
            if record.get("state") in UNFINISHED and self.studio.jobs.get(record["id"]) is None:
                try:
                    self._submit(record)
                except DeepDreamError as exc:  # a record this version cannot run: say so, serve the rest
                    record["state"], record["message"] = "failed", str(exc)
                    self._write(record)
                    log.warning("video job %s cannot be resumed: %s", record["id"], exc)
                    continue
                ids.append(record["id"])
        if ids:
            log.info("resumed unfinished video jobs: %s", ", ".join(ids))
        return ids

    def cancel(self, job_id: str) -> None:
        self.studio.jobs.cancel(job_id)

    def _submit(self, record: dict) -> Job:
        def on_state(state: str, message: str) -> None:
            record["state"], record["message"] = state, message
            self._write(record)
            log.info("video job %s %s%s", record["id"], state, f": {message}" if message else "")

        return self.studio.video(
            record["kind"],
            record["source"],
            record["output"],
            from_mapping(record["settings"]),
            dict(record["params"]),
            job_id=record["id"],
            on_state=on_state,
        )
