"""The worker: claims due jobs per lane with a lease, runs them, applies their transitions."""

from castbridge.worker.loop import Worker, lane_capacity, new_worker_id

__all__ = ["Worker", "lane_capacity", "new_worker_id"]
