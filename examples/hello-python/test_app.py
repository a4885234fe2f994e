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


def write_junit(result, path):
    """Writes the results as JUnit XML, which Drover collects from $DROVER_REPORTS."""
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name="hello-python", tests=str(result.testsRun))
    failed = {id(t): ("failure", msg) for t, msg in result.failures}
    failed.update({id(t): ("error", msg) for t, msg in result.errors})
    for test in result.cases:
        case = ET.SubElement(suite, "testcase", classname=type(test).__name__, name=test._testMethodName)
        if id(test) in failed:
            kind, text = failed[id(test)]
            ET.SubElement(case, kind, message=text.strip().splitlines()[-1]).text = text
    ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)


class RecordingResult(unittest.TextTestResult):
    def startTest(self, test):
        self.cases = getattr(self, "cases", [])
        self.cases.append(test)
        super().startTest(test)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(resultclass=RecordingResult, verbosity=2).run(suite)
    reports = os.environ.get("DROVER_REPORTS")
    if reports:
        write_junit(result, os.path.join(reports, "junit.xml"))
    sys.exit(0 if result.wasSuccessful() else 1)
