"""Locust users for bench/serving_load.py: POST /recommend for random known users.

Run by the bench (``locust -f bench/serving_locustfile.py --headless ...``), never imported by
the project: locust patches the process (gevent) when imported. ``SERVING_BENCH_USERS`` is the
number of known user ids (1..N); ``SERVING_BENCH_PACE`` the requests per second each simulated
user sends (0: as fast as answers come back, a closed loop).
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, constant_throughput, task

KNOWN_USERS = int(os.environ.get("SERVING_BENCH_USERS", "610"))
PACE = float(os.environ.get("SERVING_BENCH_PACE", "0"))


class Recommender(FastHttpUser):
    wait_time = constant_throughput(PACE) if PACE > 0 else constant(0)

    @task
    def recommend(self) -> None:
        body = {"user_id": random.randint(1, KNOWN_USERS), "k": 10}
        with self.client.post("/recommend", json=body, name="/recommend", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif len(response.json().get("items", [])) != 10:
                response.failure(f"not 10 items: {response.text[:200]}")
