"""Cron schedules through the Python client, against a real broker (started per test
exactly as in ``test_live_server.py``). The broker runs on the real clock, so the schedule
fires every second and the test waits at most a few seconds for its jobs.
"""

import pathlib
import sys
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import Conflict, InvalidArgument, NotFound, messages  # noqa: E402
from test_live_server import LiveServerTest  # noqa: E402

#: How long a test waits for a fire time that is due within a second.
FIRE_TIMEOUT_S = 5.0


class ScheduleTest(LiveServerTest):
    """Create, fire, list, update, pause, resume and delete a schedule."""

    def test_a_schedule_fires_and_its_jobs_say_which(self):
        client = self.connect()
        client.queue_create("cron")
        created = client.schedule_create(
            "every-second",
            "* * * * * *",
            "cron",
            payload=b"tick",
            time_zone="Europe/Berlin",
            overlap=messages.OverlapPolicy.ALLOW,
            missed_runs=messages.MissedRunPolicy.SKIP,
        )
        self.assertEqual(created.name, "every-second")
        self.assertIsNotNone(created.next_fire_at_ms)
        deadline = time.monotonic() + FIRE_TIMEOUT_S
        jobs = []
        while not jobs and time.monotonic() < deadline:
            jobs = client.fetch("cron", wait_ms=500)
        self.assertTrue(jobs, "no job within %.0f s" % FIRE_TIMEOUT_S)
        metadata = dict(jobs[0].metadata)
        self.assertEqual(jobs[0].payload, b"tick")
        self.assertEqual(metadata["taskforge.schedule_id"], str(created.schedule_id))
        self.assertEqual(int(metadata["taskforge.fire_at_ms"]) % 1000, 0)

        paused = client.schedule_pause("every-second")
        self.assertTrue(paused.paused)
        self.assertIsNone(paused.next_fire_at_ms)
        resumed = client.schedule_resume(created.schedule_id)
        self.assertFalse(resumed.paused)
        updated = client.schedule_update(
            created.schedule_id, cron="0 0 3 * * *", overlap=messages.OverlapPolicy.SKIP
        )
        self.assertEqual(
            (updated.cron, updated.overlap), ("0 0 3 * * *", messages.OverlapPolicy.SKIP)
        )
        listed = client.schedule_list(queue="cron")
        self.assertEqual([s.name for s in listed.schedules], ["every-second"])
        self.assertGreaterEqual(client.schedule_get("every-second").fired_count, 1)
        client.schedule_delete("every-second")
        with self.assertRaises(NotFound):
            client.schedule_get(created.schedule_id)

    def test_bad_schedules_are_refused(self):
        client = self.connect()
        client.queue_create("cron")
        with self.assertRaises(InvalidArgument) as raised:
            client.schedule_create("five-fields", "* * * * *", "cron")
        self.assertTrue(raised.exception.message.startswith("cron"))
        with self.assertRaises(InvalidArgument) as raised:
            client.schedule_create("bad-zone", "0 * * * * *", "cron", time_zone="Mars/Base")
        self.assertTrue(raised.exception.message.startswith("time_zone"))
        client.schedule_create("hourly", "0 0 * * * *", "cron")
        with self.assertRaises(Conflict):
            client.schedule_create("hourly", "0 0 * * * *", "cron")
        with self.assertRaises(Conflict):
            client.queue_delete("cron")


if __name__ == "__main__":
    unittest.main()
