"""`mattebridge track --server ADDR`: the same job, run by a resident `mattebridge serve`."""

from __future__ import annotations

import copy
import os
from typing import Callable, Optional

from mattebridge.core.track.job import TrackJob, TrackStats, check_job
from mattebridge.core.wire.client import Client


def track_on_server(
    job: TrackJob,
    address: str,
    server_key: Optional[str] = None,
    timeout: float = 10.0,
    progress: Optional[Callable[[int, int, int], None]] = None,
    log: Callable[[str], None] = lambda s: None,
) -> TrackStats:
    check_job(job)
    prompts = copy.deepcopy(job.prompts)
    for per in prompts.objects.values():  # the server does not share our working folder
        for fp in per.values():
            if fp.mask:
                fp.mask = os.path.abspath(fp.mask)
    stats = TrackStats()
    with Client(address, timeout=timeout, server_key=server_key) as client:
        info = client.info
        log(f"server {address}: {info['model']} on {info['device']}, input {info['image_size']}px")
        clip = client.open_clip(
            job.plate, str(job.frames), layer=job.layer, colorspace=job.colorspace, ocio=job.ocio, view=job.view
        )
        log(f"colour {clip.colorspace} -> {clip.display}/{clip.view}")
        run = clip.propagate(
            direction=job.direction,
            out=job.out,
            layout=job.layout,
            channels=job.channels,
            edge=job.edge,
            fill_holes=job.fill_holes,
            stabilize=job.stabilize,
            report=job.report,
            cutout=job.cutout,
            prompts=prompts.to_json(),
            force=job.force,
            foreground=job.foreground,
            matte_tile=job.matte_tile,
        )
        try:
            for result in run:
                if progress:
                    progress(result.done, result.total, result.frame)
        except KeyboardInterrupt:
            run.cancel()
            raise
        clip.close()
    summary = run.summary
    stats.frames_written, stats.frames_skipped = summary["frames_written"], summary["frames_skipped"]
    stats.seconds.update(summary["seconds"])
    return stats
