// A second example: a Node.js web service with no dependencies, deployed blue-green.
"use strict";
const http = require("http");

const port = Number(process.env.PORT || 5000);
const page = () => ({
  greeting: process.env.GREETING || "hello",
  app: process.env.DROVER_APP || "hello-node",
  release: /^\d+$/.test(process.env.DROVER_RELEASE || "") ? `v${process.env.DROVER_RELEASE}` : process.env.DROVER_RELEASE || "dev",
  instance: process.env.DROVER_INSTANCE || "local",
});

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("ok\n");
  } else if (req.url === "/") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify(page()) + "\n");
  } else {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
  }
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port} release ${page().release}`));
module.exports = { page };
