// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The CTest driver of the dashboard test: starts the built chat_server on a
// free loopback port with a fast sampler, opens real WebSocket clients so the
// plots move (connections ramp up, rooms fill, messages flow), makes the
// trouble an operator must see (a reader that stopped reading in a busy room,
// connections over --max-connections-per-ip, closes with several codes), runs
// dashboard.mjs against it, and stops the server by its pid on every path.
//
//   node run_dashboard.mjs --server <chat_server> --screenshot <png>
//        [--chromium <path>] [--expect-empty <series>] [--clients <n>] [--require]
//
// Exit codes: dashboard.mjs's (0 pass, 1 fail, 77 skipped: no Chromium), or 1
// when the server does not start, dies during the test, or does not exit 0 on
// SIGTERM.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const STARTUP_MS = 15000; // a sanitizer build starts slowly on a loaded machine
const STOP_MS = 10000; // chat_server's own grace period is 5 s
const OVERALL_MS = 100000; // below CTest's TIMEOUT, so we clean up ourselves

function fail(message) {
  console.error(`run_dashboard.mjs: FAIL: ${message}`);
  return 1;
}

function parseArgs(argv) {
  const opts = { chromium: "/usr/bin/chromium", clients: 20, require: false, expectEmpty: [] };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--server") opts.server = value();
    else if (a === "--screenshot") opts.screenshot = value();
    else if (a === "--chromium") opts.chromium = value();
    else if (a === "--expect-empty") opts.expectEmpty.push(value());
    else if (a === "--clients") opts.clients = Number(value());
    else if (a === "--require") opts.require = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.server || !opts.screenshot) throw new Error("--server and --screenshot are required");
  if (!(opts.clients >= 1 && opts.clients <= 200)) throw new Error("--clients must be in 1..200");
  return opts;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The server, started with --port 0; resolves with the port it printed.
// perIp: --max-connections-per-ip, room for the clients and the slow room but
// not for a whole burst.
function startServer(binary, perIp) {
  // Small bounds, so the trouble below shows within seconds: 64 KiB queued
  // per reader before drops, 128 KiB per message, perIp connections per address.
  const child = spawn(binary, ["--port", "0", "--bind", "127.0.0.1", "--sample-interval-ms", "200",
                               "--max-buffered-bytes", "65536", "--max-payload-bytes", "131072",
                               "--max-connections-per-ip", String(perIp)],
                      { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const port = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no port printed within ${STARTUP_MS} ms; output:\n${output}`)),
      STARTUP_MS);
    const onData = (chunk) => {
      output += chunk;
      const m = /WebSocket\s+ws:\/\/127\.0\.0\.1:(\d+)\//.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", (chunk) => {
      output += chunk;
      process.stderr.write(`chat_server: ${chunk}`);
    });
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`chat_server exited (code ${code}, signal ${signal}) before listening; ` +
                       `output:\n${output}`));
    });
  });
  return { child, port, exited };
}

// SIGTERM (a graceful shutdown: every connection closed with 1001, exit 0),
// then SIGKILL if it does not exit in time. Resolves with how it exited.
async function stopServer(server) {
  const { child, exited } = server;
  if (child.exitCode !== null || child.signalCode !== null) {
    return { code: child.exitCode, signal: child.signalCode, forced: false };
  }
  child.kill("SIGTERM");
  const result = await Promise.race([exited, sleep(STOP_MS).then(() => null)]);
  if (result) return { ...result, forced: false };
  child.kill("SIGKILL");
  return { ...(await exited), forced: true };
}

// Clients that make every series move: a ramp of connections (one every
// 100 ms), each in one of four rooms, publishing every 300 ms.
async function openClients(WebSocket, port, count, stopping) {
  const sockets = [];
  const timers = [];
  for (let i = 0; i < count && !stopping(); ++i) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.on("error", () => {}); // a failed client shows as a missing plot movement, not a crash
    const room = `room-${i % 4}`;
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "join", room }));
      timers.push(setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify({ type: "room-message", room, content: `hello from ${i}` }));
        }
      }, 300));
    });
    sockets.push(ws);
    await sleep(100);
  }
  return () => {
    for (const t of timers) clearInterval(t);
    for (const ws of sockets) ws.terminate();
  };
}

// The trouble, repeated every 2 s until stopping so every refresh of the page
// sees some: in room "slow" one reader stops reading its socket while two
// publishers send 32 KiB messages (drops once its 64 KiB queue is full); a
// burst of 25 connections over the per-address limit (refusals); the burst's
// admitted connections then close with 1000, 1001, 4000 ("other"), 1009 (a
// message over --max-payload-bytes) and 1006 (a reset, no close handshake).
function makeTrouble(WebSocket, port, stopping) {
  const sockets = [];
  const timers = [];
  const open = (onOpen) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.on("error", () => {}); // refused handshakes are the point
    if (onOpen) ws.on("open", () => onOpen(ws));
    sockets.push(ws);
    return ws;
  };
  const join = (ws) => ws.send(JSON.stringify({ type: "join", room: "slow" }));
  open((ws) => {
    join(ws);
    setTimeout(() => ws.pause(), 200); // stops reading: the kernel buffers, then the server's queue fill
  });
  const content = "x".repeat(32 * 1024);
  for (let i = 0; i < 2; ++i) {
    open((ws) => {
      join(ws);
      timers.push(setInterval(() => {
        if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1 << 20) {
          ws.send(JSON.stringify({ type: "room-message", room: "slow", content }));
        }
      }, 20));
    });
  }
  const oversized = "y".repeat(200 * 1024);
  const ends = [
    (ws) => ws.close(1000, "bye"),
    (ws) => ws.close(1001, "going away"),
    (ws) => ws.close(4000, "application code"),
    (ws) => ws.send(JSON.stringify({ type: "echo", data: oversized })),
    (ws) => ws.terminate(),
  ];
  const burst = () => {
    if (stopping()) return;
    const batch = [];
    for (let i = 0; i < 25; ++i) batch.push(open(null));
    timers.push(setTimeout(() => {
      batch.forEach((ws, i) => {
        if (ws.readyState === WebSocket.OPEN) ends[i % ends.length](ws);
        else ws.terminate();
      });
      // A close handshake the server never answers must not hold a socket.
      timers.push(setTimeout(() => batch.forEach((ws) => ws.terminate()), 1000));
    }, 700));
  };
  timers.push(setInterval(burst, 2000));
  burst();
  return () => {
    for (const t of timers) {
      clearInterval(t);
      clearTimeout(t);
    }
    for (const ws of sockets) ws.terminate();
  };
}

function runDashboard(opts, url) {
  const args = [path.join(here, "dashboard.mjs"), url, opts.screenshot, "--chromium", opts.chromium];
  for (const s of opts.expectEmpty) args.push("--expect-empty", s);
  if (opts.require) args.push("--require");
  const child = spawn(process.execPath, args, { stdio: "inherit" });
  return {
    child,
    done: new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? 1))),
  };
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    return fail(`${e.message}\nusage: node run_dashboard.mjs --server <chat_server> ` +
                "--screenshot <png> [--chromium <path>] [--expect-empty <series>] " +
                "[--clients <n>] [--require]");
  }
  if (!fs.existsSync(opts.server)) return fail(`no chat_server binary at ${opts.server}`);
  try {
    fs.accessSync(opts.chromium, fs.constants.X_OK);
  } catch {
    const message = `Chromium not found at ${opts.chromium} (install the Debian package ` +
                    "chromium, e.g. scripts/install_deps.sh --tests)";
    if (opts.require) return fail(message);
    console.error(`run_dashboard.mjs: ${message}; skipping`);
    return 77;
  }
  let WebSocket;
  try {
    ({ WebSocket } = await import("ws"));
    await import("playwright-core");
  } catch (e) {
    return fail(`the node packages are not installed next to this script (${e.message}); ` +
                `run: npm install --no-audit --no-fund (in ${here})`);
  }

  const server = startServer(opts.server, opts.clients + 20);
  let dashboard = null;
  let closeClients = () => {};
  let stopping = false;
  // Every way out of this process stops the server (and the browser driver).
  const killAll = () => {
    for (const c of [server.child, dashboard && dashboard.child]) {
      if (c && c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
  };
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      console.error(`run_dashboard.mjs: ${sig}, stopping chat_server (pid ${server.child.pid})`);
      killAll();
      process.exit(1);
    });
  }
  const overall = setTimeout(() => {
    console.error(`run_dashboard.mjs: FAIL: still running after ${OVERALL_MS} ms`);
    killAll();
    process.exit(1);
  }, OVERALL_MS);

  let code = 1;
  try {
    const port = await server.port;
    const url = `http://127.0.0.1:${port}/`;
    console.log(`run_dashboard.mjs: chat_server pid ${server.child.pid} on ${url}`);
    const died = server.exited.then((r) => ({ died: r }));
    const clients = openClients(WebSocket, port, opts.clients, () => stopping);
    // The page opens while the ramp is still going, as a person's would.
    await sleep(500);
    dashboard = runDashboard(opts, url);
    const stopTrouble = makeTrouble(WebSocket, port, () => stopping);
    const priorClose = closeClients;
    closeClients = () => {
      stopTrouble();
      priorClose();
    };
    const first = await Promise.race([dashboard.done.then((c) => ({ code: c })), died]);
    stopping = true;
    const closeRamp = await clients;
    const closeTrouble = closeClients;
    closeClients = () => {
      closeTrouble();
      closeRamp();
    };
    if (first.died) {
      dashboard.child.kill("SIGKILL");
      return fail(`chat_server died during the test (code ${first.died.code}, ` +
                  `signal ${first.died.signal})`);
    }
    code = first.code;
  } catch (e) {
    code = fail(e.message);
  } finally {
    stopping = true;
    closeClients();
    const how = await stopServer(server);
    clearTimeout(overall);
    if (how.forced) {
      code = fail(`chat_server (pid ${server.child.pid}) ignored SIGTERM for ${STOP_MS} ms; killed`);
    } else if (how.code !== 0) {
      code = fail(`chat_server exited with code ${how.code}, signal ${how.signal} on SIGTERM ` +
                  "(expected a graceful shutdown and exit 0)");
    } else {
      console.log(`run_dashboard.mjs: chat_server stopped (exit ${how.code})`);
    }
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`run_dashboard.mjs: FAIL: ${e.stack || e}`);
    process.exit(1);
  },
);
