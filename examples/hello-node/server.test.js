// Tests for the Node example with node's own test runner: start it and talk HTTP to it.
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const { spawn } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

test("serves its greeting and health", async () => {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(__dirname, "server.js")], {
    env: { ...process.env, PORT: String(port), GREETING: "hi", DROVER_RELEASE: "3" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve) => child.stdout.once("data", resolve));
  try {
    const root = await (await fetch(`http://127.0.0.1:${port}/`)).json();
    assert.strictEqual(root.greeting, "hi");
    assert.strictEqual(root.release, "v3");
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.strictEqual(health.status, 200);
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }
});
