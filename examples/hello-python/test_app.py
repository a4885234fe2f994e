"""Tests for the example app: start it on a free port and talk HTTP to it."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppTest(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port), GREETING="hi", DROVER_RELEASE="7")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "app.py")], env=env, stdout=subprocess.PIPE)
        # Wait for the ready line rather than sleeping.
        self.proc.stdout.readline()

    def tearDown(self):
        self.proc.terminate()
        self.assertEqual(self.proc.wait(timeout=10), 0)
        self.proc.stdout.close()

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
            return r.status, r.read()

    def test_root_shows_greeting_and_release(self):
        status, body = self.get("/")
        self.assertEqual(status, 200)
        page = json.loads(body)
        self.assertEqual(page["greeting"], "hi")
        self.assertEqual(page["release"], "v7")

    def test_healthz(self):
        self.assertEqual(self.get("/healthz"), (200, b"ok\n"))


if __name__ == "__main__":
    unittest.main()
