// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Opens the reference chat server's live dashboard (GET /) in headless
// Chromium, waits until every series is plotted and the health level is
// shown, checks what a person would look at, and saves a full-page screenshot.
// The traffic run_dashboard.mjs makes (drops to a reader that stopped
// reading, refusals over the per-address limit, closes with several codes)
// must show on the traffic panels as non-zero rates, the checklist's
// drop_ratio row must be warning or critical, and the level must not be ok.
//
//   node dashboard.mjs <server url> <screenshot.png> [--chromium <path>]
//        [--expect-empty <series>[,<series>...]] [--timeout-ms <n>] [--require]
//
// --expect-empty names series the server cannot measure in this build (the
// heap under a sanitizer): their canvas must be drawn with no points.
// Exit codes: 0 pass; 1 fail (the reason on stderr); 77 skipped because
// Chromium is missing (1 instead with --require).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const SKIP = 77;
const LEVELS = ["ok", "warning", "critical"];
// The plot's line colour (dashboard_page.hpp strokes each series with #2f6fde).
const LINE_RGB = [0x2f, 0x6f, 0xde];

function usage(message) {
  console.error(`dashboard.mjs: ${message}`);
  console.error(
    "usage: node dashboard.mjs <server url> <screenshot.png> [--chromium <path>] " +
      "[--expect-empty <series>[,...]] [--timeout-ms <n>] [--require]",
  );
  process.exit(1);
}

function parseArgs(argv) {
  const opts = {
    chromium: "/usr/bin/chromium",
    expectEmpty: [],
    timeoutMs: 20000,
    require: false,
    positional: [],
  };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--chromium") opts.chromium = value();
    else if (a === "--expect-empty") opts.expectEmpty.push(...value().split(",").filter(Boolean));
    else if (a === "--timeout-ms") opts.timeoutMs = Number(value());
    else if (a === "--require") opts.require = true;
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else opts.positional.push(a);
  }
  if (opts.positional.length !== 2) usage("expected <server url> and <screenshot.png>");
  if (!(opts.timeoutMs > 0)) usage("--timeout-ms must be a positive number");
  [opts.url, opts.screenshot] = opts.positional;
  return opts;
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

// Everything the checks need, read from the page in one go.
function readPage(lineRgb) {
  const near = (a, b) => Math.abs(a - b) <= 40;
  const cards = [...document.querySelectorAll(".card[data-series]")].map((card) => {
    const canvas = card.querySelector("canvas");
    let linePixels = 0;
    if (canvas && canvas.width > 0 && canvas.height > 0) {
      const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 128 && near(data[i], lineRgb[0]) && near(data[i + 1], lineRgb[1]) &&
            near(data[i + 2], lineRgb[2])) {
          ++linePixels;
        }
      }
    }
    return {
      series: card.dataset.series,
      canvases: card.querySelectorAll("canvas").length,
      points: canvas && canvas.dataset.points !== undefined ? Number(canvas.dataset.points) : null,
      width: canvas ? canvas.clientWidth : 0,
      height: canvas ? canvas.clientHeight : 0,
      linePixels,
      value: (card.querySelector("h2 span") || {}).textContent || "",
      growth: (card.querySelector(".growth") || {}).textContent || "",
    };
  });
  const text = (sel) => (document.querySelector(sel) || {}).textContent || "";
  return {
    cards,
    level: text("#level").trim(),
    healthClass: (document.querySelector("#health") || {}).className || "",
    summary: text("#summary").trim(),
    findings: [...document.querySelectorAll("#findings li")].map((li) => li.textContent.trim()),
    status: text("#status").trim(),
    rates: [...document.querySelectorAll(".card[data-rates]")].map((card) => {
      const canvas = card.querySelector("canvas");
      // Pixels of any line colour: saturated, unlike the grey grid and labels.
      let linePixels = 0;
      if (canvas && canvas.width > 0 && canvas.height > 0) {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 0; i < data.length; i += 4) {
          const hi = Math.max(data[i], data[i + 1], data[i + 2]);
          const lo = Math.min(data[i], data[i + 1], data[i + 2]);
          if (data[i + 3] > 128 && hi - lo > 60) ++linePixels;
        }
      }
      return {
        key: card.dataset.rates,
        lines: canvas && canvas.dataset.lines ? JSON.parse(canvas.dataset.lines) : {},
        points: canvas ? Number(canvas.dataset.points) : 0,
        linePixels,
        legend: (card.querySelector(".legend") || {}).textContent || "",
      };
    }),
    checks: [...document.querySelectorAll("#checks tr")].map((tr) => ({
      name: tr.dataset.check,
      level: tr.className,
      message: tr.textContent,
    })),
    bridge: text("#b-state").trim(),
  };
}

// In the page: whether the trouble shows (see the header).
function troubleShown({ codes }) {
  const lines = (key) => {
    const c = document.querySelector(`.card[data-rates="${key}"] canvas`);
    return c && c.dataset.lines ? JSON.parse(c.dataset.lines) : {};
  };
  const moved = (key, line) => (lines(key)[line] || { max: 0 }).max > 0;
  const row = document.querySelector('#checks tr[data-check="drop_ratio"]');
  const level = ((document.querySelector("#level") || {}).textContent || "").trim();
  return moved("messages", "in") && moved("messages", "out") && moved("drops", "slow_consumer") &&
    moved("refusals", "per_ip") && codes.every((code) => moved("closes", code)) && row !== null &&
    (row.className === "warning" || row.className === "critical") &&
    (level === "warning" || level === "critical");
}
// The close codes run_dashboard.mjs produces ("other": 4000).
const CLOSE_CODES = ["1000", "1001", "1006", "1009", "other"];

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!isExecutable(opts.chromium)) {
    const message =
      `dashboard.mjs: Chromium not found at ${opts.chromium} ` +
      "(install the Debian package chromium, e.g. scripts/install_deps.sh --tests)";
    console.error(opts.require ? message : `${message}; skipping`);
    return opts.require ? 1 : SKIP;
  }
  const base = opts.url.replace(/\/+$/, "");

  // The series the server records: every one must have its own plot.
  let history;
  try {
    const r = await fetch(`${base}/history`, { cache: "no-store" });
    check(r.ok, `GET ${base}/history answered ${r.status}`);
    history = await r.json();
  } catch (e) {
    if (e instanceof Failure) throw e;
    throw new Failure(`cannot GET ${base}/history: ${e.cause ? e.cause.message : e.message}`);
  }
  check(Array.isArray(history.samples) && history.samples.length > 0,
        `GET /history has no samples: ${JSON.stringify(history).slice(0, 200)}`);
  const recorded = Object.keys(history.samples[0]).filter((k) => k !== "t");
  for (const s of opts.expectEmpty) {
    check(recorded.includes(s), `--expect-empty ${s}: GET /history has no such series`);
  }

  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "wsguard-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: opts.chromium,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      viewport: { width: 1280, height: 900 },
      timeout: 30000,
    });
    const page = context.pages()[0] || (await context.newPage());
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      const where = (m.location() || {}).url || "";
      // The browser asks for /favicon.ico on its own; the page has none.
      if (m.type() === "error" && !where.endsWith("/favicon.ico")) {
        pageErrors.push(`console error: ${m.text()}${where ? ` (${where})` : ""}`);
      }
    });

    const response = await page.goto(`${base}/`, { waitUntil: "load", timeout: opts.timeoutMs });
    check(response && response.status() === 200,
          `GET / answered ${response ? response.status() : "nothing"}`);

    // Every plot drawn with data (or, for an unmeasured series, drawn empty)
    // and a health level shown.
    try {
      await page.waitForFunction(
        ({ empty, levels }) => {
          const canvases = [...document.querySelectorAll(".card[data-series] canvas")];
          const level = (document.querySelector("#level") || {}).textContent || "";
          return canvases.length > 0 && levels.includes(level.trim()) &&
            canvases.every((c) => {
              const n = Number(c.dataset.points);
              const series = c.closest(".card").dataset.series;
              return c.dataset.points !== undefined && (empty.includes(series) ? n === 0 : n > 0);
            });
        },
        { empty: opts.expectEmpty, levels: LEVELS },
        { timeout: opts.timeoutMs, polling: 200 },
      );
    } catch (e) {
      const state = await page.evaluate(readPage, LINE_RGB).catch(() => null);
      await page.screenshot({ path: opts.screenshot, fullPage: true }).catch(() => {});
      throw new Failure(
        `the dashboard did not plot every series within ${opts.timeoutMs} ms ` +
          `(${e.message.split("\n")[0]}); page state: ${JSON.stringify(state)}; ` +
          `screenshot of it: ${opts.screenshot}`,
      );
    }
    // The trouble on the traffic panels and in the checklist.
    try {
      await page.waitForFunction(troubleShown, { codes: CLOSE_CODES },
                                 { timeout: opts.timeoutMs * 2, polling: 250 });
    } catch (e) {
      const state = await page.evaluate(readPage, LINE_RGB).catch(() => null);
      await page.screenshot({ path: opts.screenshot, fullPage: true }).catch(() => {});
      throw new Failure(
        `the traffic panels or the checklist did not show the drops, refusals and closes ` +
          `within ${opts.timeoutMs * 2} ms (${e.message.split("\n")[0]}); rates ` +
          `${JSON.stringify(state && state.rates)}; checks ${JSON.stringify(state && state.checks)}; ` +
          `level ${state && state.level}; screenshot of it: ${opts.screenshot}`,
      );
    }
    // One more refresh (1 s) so the plots hold more than the first sample.
    await page.waitForTimeout(1500);
    const state = await page.evaluate(readPage, LINE_RGB);
    await page.screenshot({ path: opts.screenshot, fullPage: true });

    const shown = state.cards.map((c) => c.series);
    for (const s of recorded) {
      check(shown.includes(s), `no plot for series ${s} (plots: ${shown.join(", ")})`);
    }
    check(new Set(shown).size === shown.length, `a series is plotted twice: ${shown.join(", ")}`);
    for (const c of state.cards) {
      const what = `plot ${c.series}`;
      check(c.canvases === 1, `${what}: ${c.canvases} canvases, expected one`);
      check(c.width > 100 && c.height > 50, `${what}: canvas is ${c.width}x${c.height} px`);
      if (opts.expectEmpty.includes(c.series)) {
        check(c.points === 0, `${what}: expected no points (not measured), has ${c.points}`);
        continue;
      }
      check(c.points > 1, `${what}: ${c.points} points, expected several samples`);
      check(c.linePixels > 20, `${what}: ${c.points} points but no line drawn on the canvas`);
      check(c.value && c.value !== "–", `${what}: no current value shown ("${c.value}")`);
      check(/growth|collecting/.test(c.growth), `${what}: no growth line ("${c.growth}")`);
    }
    // The health text: the level, its colour class, and either the findings or
    // the sentence saying there are none.
    check(LEVELS.includes(state.level), `#level shows "${state.level}"`);
    check(state.healthClass === state.level,
          `#health has class "${state.healthClass}", level is "${state.level}"`);
    // The growth verdict says what it rests on: never a bare "nothing grows".
    check(/too little history: .* of the .* a growth verdict needs|of samples/.test(state.summary),
          `no growth verdict with its history: summary "${state.summary}"`);
    check(!/nothing grows/i.test(state.summary), `the page says "${state.summary}"`);
    check(state.level !== "ok", "the page says ok with a fifth of a room's messages dropped");
    const dropRow = state.checks.find((c) => c.name === "drop_ratio");
    check(dropRow && (dropRow.level === "warning" || dropRow.level === "critical") &&
            /messages dropped/.test(dropRow.message),
          `drop_ratio row: ${JSON.stringify(dropRow)}`);
    const rates = Object.fromEntries(state.rates.map((r) => [r.key, r]));
    for (const key of ["messages", "drops", "refusals", "closes"]) {
      const r = rates[key];
      check(r, `no traffic panel ${key}`);
      check(r.points > 1, `traffic panel ${key}: ${r.points} points`);
      check(r.linePixels > 20, `traffic panel ${key}: no line drawn`);
    }
    check(rates.drops.lines.slow_consumer.total > 0 && /slow_consumer/.test(rates.drops.legend),
          `drops panel: ${JSON.stringify(rates.drops)}`);
    check(rates.refusals.lines.per_ip.total > 0 && /per_ip/.test(rates.refusals.legend),
          `refusals panel: ${JSON.stringify(rates.refusals)}`);
    for (const code of CLOSE_CODES) {
      check(rates.closes.lines[code].total > 0 && rates.closes.legend.includes(code),
            `closes panel, code ${code}: ${JSON.stringify(rates.closes)}`);
    }
    check(state.bridge === "not configured", `bridge panel says "${state.bridge}" without --redis`);
    check(state.status.startsWith("live"), `status line says "${state.status}"`);
    check(pageErrors.length === 0, `the page reported errors:\n  ${pageErrors.join("\n  ")}`);
    check(fs.statSync(opts.screenshot).size > 10000, `screenshot ${opts.screenshot} is too small`);

    const plotted = state.cards
      .map((c) => `${c.series}=${c.points}pts/${c.value}`)
      .join(" ");
    console.log(`dashboard.mjs: level ${state.level}; ${state.findings.length} finding(s); ` +
                `${state.status}`);
    console.log(`dashboard.mjs: plots ${plotted}`);
    console.log(`dashboard.mjs: drop_ratio ${dropRow.level}: ${dropRow.message}`);
    for (const r of state.rates) console.log(`dashboard.mjs: ${r.key}: ${r.legend}`);
    console.log(`dashboard.mjs: screenshot ${opts.screenshot}`);
    return 0;
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`dashboard.mjs: FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
    process.exit(1);
  },
);
