// Browser tests for the Linli web UI in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core). They start `linli serve --demo` on a free loopback port with a
// fresh data directory, and sign in as the demo accounts.
//
//   LINLI_BIN=/path/to/linli node --test ui.test.mjs
//   LINLI_SCREENSHOTS=../../docs/screenshots  also writes the screenshots shown in the docs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { deflateSync } from "node:zlib";
import { createRequire } from "node:module";
import { chromium, request } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");

const BIN = process.env.LINLI_BIN || "/var/tmp/linli-target/debug/linli";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.LINLI_SCREENSHOTS || "";
let server, browser, base, dataDir;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
}

async function waitReady(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { const r = await fetch(url + "/readyz"); if (r.ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("server did not become ready");
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "linli-browser-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve", "--demo", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, LINLI_LOG: "warn" }, stdio: ["ignore", "ignore", "inherit"],
  });
  await waitReady(base, 120_000);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
});

async function newPage(viewport = { width: 1366, height: 768 }) {
  const context = await browser.newContext({ viewport, locale: "zh-CN" });
  return context.newPage();
}

async function login(page, user, password = "linli-demo") {
  await page.goto(base + "/login");
  await page.fill("#login", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForLoadState("load"), page.click("#login-submit")]);
}

// WCAG AA: every visible piece of text has a contrast ratio of at least 4.5:1 against the
// background behind it (3:1 for large text). Returns the offenders.
async function lowContrast(page) {
  return page.evaluate(() => {
    const parse = (c) => { const m = c.match(/[\d.]+/g) || []; return m.map(Number); };
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const bad = [];
    for (const el of document.querySelectorAll("body *")) {
      const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
      const r = el.getBoundingClientRect();
      if (!own || r.width === 0 || r.height === 0) continue;
      const st = getComputedStyle(el);
      if (st.visibility === "hidden" || st.display === "none") continue;
      const fg = parse(st.color).slice(0, 3);
      const l1 = lum(fg), l2 = lum(background(el));
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      const large = parseFloat(st.fontSize) >= 24 || (parseFloat(st.fontSize) >= 18.66 && parseInt(st.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 20)}" ${ratio.toFixed(2)}`);
    }
    return bad;
  });
}

// axe-core on the page as it is now: no serious or critical accessibility violation.
async function axe(page) {
  // Evaluated through the driver, not injected as a <script> (the pages' CSP forbids inline script).
  await page.evaluate(readFileSync(AXE, "utf8"));
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
  });
  return result;
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name), fullPage: false });
}

test("staff finds a person and opens the household (一户一表)", async () => {
  const page = await newPage();
  await login(page, "committee");
  // Staff land on their workbench; the registry is one click away.
  assert.match(page.url(), /\/staff$/);
  await page.goto(base + "/registry");
  assert.equal(await page.locator("h1").textContent(), "一户一表");
  // The community site plan is drawn as SVG with one link per building.
  await page.click("text=幸福里社区");
  assert.ok((await page.locator("svg.siteplan a").count()) >= 5);
  await page.goto(base + "/registry/persons");
  await page.fill("#name", "王");
  await Promise.all([page.waitForLoadState("load"), page.click("#search")]);
  const rows = page.locator("#results tbody tr");
  assert.ok((await rows.count()) > 0, "search finds people named 王…");
  const firstName = (await rows.first().locator("td").first().textContent()).trim();
  assert.ok(firstName.startsWith("王"));
  // Numbers are masked in the list.
  assert.match(await rows.first().locator("td").nth(3).textContent(), /\*{8}/);
  await Promise.all([page.waitForLoadState("load"), rows.first().locator("a").first().click()]);
  assert.match(page.url(), /\/registry\/households\//);
  assert.ok((await page.locator("table tbody tr").count()) >= 1);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the household page");
  await shot(page, "staff-household-1366x768.png");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "staff-household-390x844.png");
  await page.context().close();
});

test("staff edits a household; a bad date is shown beside the field; CSRF and double submit", async () => {
  const page = await newPage();
  await login(page, "committee");
  await page.goto(base + "/registry/persons?name=%E6%9D%8E");
  await Promise.all([page.waitForLoadState("load"), page.locator("#results tbody tr a").first().click()]);
  const householdUrl = page.url();
  await Promise.all([page.waitForLoadState("load"), page.click("#edit-household")]);
  // Server-side validation: an impossible date.
  await page.evaluate(() => { document.querySelector("#moved_in").type = "text"; });
  await page.fill("#moved_in", "2024-02-30");
  await Promise.all([page.waitForLoadState("load"), page.click("#save-household")]);
  assert.equal(await page.locator("#moved_in").getAttribute("aria-invalid"), "true");
  assert.match(await page.locator("#moved_in-error").textContent(), /无效/);
  await page.fill("#moved_in", "2018-09-01");
  await page.fill("#note", "2026年入户走访：一切正常");
  await Promise.all([page.waitForLoadState("load"), page.click("#save-household")]);
  assert.equal(page.url(), householdUrl + "?saved=1");
  assert.equal((await page.locator("#note").textContent()).trim(), "2026年入户走访：一切正常");
  assert.ok((await page.locator(".notice.ok").count()) === 1);
  // A form posted without the CSRF token is refused.
  const resp = await page.request.post(householdUrl + "/edit", { form: { version: "1", tenure: "owner", note: "x" } });
  assert.equal(resp.status(), 403);
  await page.context().close();
});

test("import wizard reports the bad row and imports the good one", async () => {
  const page = await newPage();
  await login(page, "committee");
  // A real room of 幸福里社区, found through the place tree API.
  const rooms = await (await page.request.get(base + "/api/v1/places?kind=room")).json();
  const room = rooms.find((r) => r.room_use === "residential");
  const unit = await (await page.request.get(base + "/api/v1/places/" + room.parent_id)).json();
  const building = await (await page.request.get(base + "/api/v1/places/" + unit.parent_id)).json();
  const csv = [
    "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号,手机号,标签,入住日期",
    `B1,幸福里社区,${building.name},${unit.name},${room.name},租户,蒋一,户主,110101198503010010,13900001111,,2021-04-01`,
    `B2,幸福里社区,${building.name},${unit.name},${room.name},租户,蒋二,户主,110101198503010021,,,`,
  ].join("\n");
  const file = join(dataDir, "import.csv");
  writeFileSync(file, csv);
  await page.goto(base + "/registry/import");
  await page.setInputFiles("#file", file);
  await Promise.all([page.waitForLoadState("load"), page.click("#upload")]);
  const bad = page.locator("#issues tr.bad-row");
  assert.equal(await bad.count(), 1);
  assert.equal((await bad.first().locator("td").first().textContent()).trim(), "3");
  assert.match(await bad.first().textContent(), /校验位/);
  assert.equal((await page.locator("#households-created").textContent()).trim(), "1");
  await Promise.all([page.waitForLoadState("load"), page.click("#commit")]);
  assert.equal(await page.locator("#import-done").count(), 1);
  // The imported head is findable by exact ID number.
  await page.goto(base + "/registry/persons?id_number=110101198503010010");
  assert.equal(await page.locator("#results tbody tr").count(), 1);
  await page.context().close();
});

test("language switch is remembered, and big-text mode enlarges the page", async () => {
  const page = await newPage();
  await login(page, "committee");
  await page.goto(base + "/registry/persons");
  const before = await page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
  await Promise.all([page.waitForLoadState("load"), page.click("#switch-lang")]);
  assert.equal(await page.locator("html").getAttribute("lang"), "en");
  assert.equal((await page.locator("h1").textContent()).trim(), "Find people");
  await page.goto(base + "/registry");
  assert.equal(await page.locator("html").getAttribute("lang"), "en", "the choice is remembered");
  await Promise.all([page.waitForLoadState("load"), page.click("#toggle-big")]);
  assert.match((await page.locator("html").getAttribute("class")) || "", /big/);
  const after = await page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
  assert.ok(after > before * 1.2, `font grows: ${before} → ${after}`);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast in big-text mode");
  // Keyboard: the skip link is the first thing Tab reaches.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.className), "skip");
  await page.context().close();
});

test("a resident sees only their own household", async () => {
  const page = await newPage({ width: 390, height: 844 });
  await login(page, "resident");
  assert.match(page.url(), /\/me$/);
  assert.equal((await page.locator("h1").textContent()).trim(), "我的家庭");
  assert.ok((await page.locator(".member").count()) >= 1);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the resident page");
  await shot(page, "resident-home-390x844.png");
  await page.setViewportSize({ width: 1366, height: 768 });
  await shot(page, "resident-home-1366x768.png");
  // Staff pages and other households are refused.
  const r1 = await page.goto(base + "/registry/persons");
  assert.equal(r1.status(), 403);
  assert.match(await page.locator("h1").textContent(), /没有权限/);
  const api = await page.request.get(base + "/api/v1/households?limit=1");
  assert.equal(api.status(), 403);
  // Correction request through the form.
  await page.goto(base + "/me/corrections/new");
  await page.selectOption("#field", "note");
  await page.fill("#new_value", "家里新添了一位老人");
  await Promise.all([page.waitForLoadState("load"), page.click("#submit-correction")]);
  assert.match(page.url(), /\/me\?done=1$/);
  assert.equal(await page.locator(".notice.ok").count(), 1);
  await page.context().close();
});

test("wrong password shows a clear error; unknown pages get the site's 404", async () => {
  const page = await newPage();
  await login(page, "committee", "not-the-password");
  assert.match(await page.locator("#login-error").textContent(), /密码错误/);
  const r = await page.goto(base + "/no/such/page");
  assert.equal(r.status(), 404);
  assert.match(await page.locator("h1").textContent(), /找不到页面/);
  await page.context().close();
});

// ---------------------------------------------------------------------------------------------
// Reports (报事 / 报修): the resident's form and live page, the staff queue and action forms,
// the repair grab pool and paid quote, and the webhook console.

// A signed-in API session (its own cookie jar) for acting as staff while a page stays open.
async function apiSession(user) {
  const api = await request.newContext({ baseURL: base });
  const r = await api.post("/api/v1/auth/login", { data: { login: user, password: "linli-demo" } });
  assert.equal(r.status(), 200, `${user} signs in over the API`);
  const csrf = (await r.json()).csrf_token;
  const post = async (path, data) => {
    const resp = await api.post(path, { data, headers: { "x-csrf-token": csrf } });
    assert.ok(resp.ok(), `${user} POST ${path} ${JSON.stringify(data)}: ${resp.status()} ${await resp.text()}`);
    return resp.json();
  };
  const get = async (path) => {
    const resp = await api.get(path);
    assert.ok(resp.ok(), `${user} GET ${path}: ${resp.status()}`);
    return resp.json();
  };
  return { api, post, get, act: (id, data) => post(`/api/v1/reports/${id}/actions`, data) };
}

// A small valid PNG (RGB, 8×8, a gradient), built chunk by chunk with real CRCs.
function tinyPng() {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const sum = Buffer.alloc(4); sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const size = 8;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB; compression, filter, interlace stay 0
  const rows = [];
  for (let y = 0; y < size; y++) {
    rows.push(0); // filter: none
    for (let x = 0; x < size; x++) rows.push(x * 32, y * 32, 128);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.from(rows))), chunk("IEND", Buffer.alloc(0)),
  ]);
}

// Opens a report page and waits until its live connection (/events) is answered, so an event
// sent afterwards reaches it.
async function openLive(page, url) {
  const connected = page.waitForResponse((r) => new URL(r.url()).pathname === "/events", { timeout: 10_000 });
  await page.goto(url);
  await connected;
  // Marks this document: a reload would lose the mark, an in-place refresh keeps it.
  await page.evaluate(() => { window.__sameDocument = true; });
}

const LIVE_MS = 10_000;

test("a resident files a report with a photo; staff accept it and the open page updates live", async () => {
  const page = await newPage({ width: 390, height: 844 });
  await login(page, "resident");
  // An open report of the same category at the resident's building, filed by staff (phone),
  // so the similar-reports check has something to show.
  const committee = await apiSession("committee");
  await page.goto(base + "/me/reports/new");
  const places = await page.locator("#place_id option").evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
  assert.match(places[0][1], /^我家/, "the resident's home is the first place offered");
  const building = places.find(([, name]) => /栋$/.test(name.trim()));
  assert.ok(building, `the home's building is offered: ${JSON.stringify(places)}`);
  await committee.post("/api/v1/reports", {
    category: "environment", description: "楼道里堆放的纸箱挡住了消防通道", place_id: building[0], channel: "phone",
  });

  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the resident report form");
  await shot(page, "resident-report-new-390x844.png");
  // The similar-reports check (a GET form) lists the open report at the building.
  await page.selectOption("#chk-category", "environment");
  await page.selectOption("#chk-place", places[0][0]);
  await Promise.all([page.waitForLoadState("load"), page.locator("#report-check button[type=submit]").click()]);
  assert.ok((await page.locator(".similar").count()) >= 1, "the similar open report is shown");
  assert.match(await page.locator(".similar").first().textContent(), /环境卫生.*待受理/s);
  assert.equal(await page.locator("#no-similar").count(), 0);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast with the similar reports shown");

  // An empty description is refused beside the field, and the choices are kept.
  await page.selectOption("#category", "environment");
  await page.fill("#description", "   ");
  const refused = await Promise.all([page.waitForResponse((r) => r.request().method() === "POST"), page.click("#submit-report")]);
  assert.equal(refused[0].status(), 400);
  await page.waitForLoadState("load");
  assert.equal(await page.locator("#description").getAttribute("aria-invalid"), "true");
  assert.ok((await page.locator("#description-error").textContent()).trim().length > 0);
  // The page lands on the field to correct.
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), "description");
  assert.equal(await page.locator("#category").inputValue(), "environment");

  // File the report itself.
  const description = "单元门口的垃圾桶满了三天没人清运";
  await page.selectOption("#category", "environment");
  await page.fill("#description", description);
  await page.selectOption("#place_id", places[0][0]);
  await Promise.all([page.waitForURL(/\/me\/reports\/[0-9a-f-]{36}$/), page.click("#submit-report")]);
  const id = page.url().split("/").pop();
  assert.equal((await page.locator("#report-status").textContent()).trim(), "待受理");
  assert.equal((await page.locator("h1").textContent()).trim(), description);

  // A photo: a real PNG through the page's upload form.
  const png = join(dataDir, "report-photo.png");
  writeFileSync(png, tinyPng());
  await page.setInputFiles("#photo", png);
  await Promise.all([page.waitForURL(/\?done=1$/), page.click("#upload-photo")]);
  await page.locator(".report-photos img").first().waitFor();
  assert.equal(await page.locator(".report-photos img").count(), 1);
  const photoOk = await page.locator(".report-photos img").first().evaluate((img) => img.complete && img.naturalWidth === 8);
  assert.ok(photoOk, "the stored photo is served back as an 8 px wide image");

  // It is in "my reports".
  await page.goto(base + "/me/reports");
  const mine = page.locator(`#my-reports a[href="/me/reports/${id}"]`);
  assert.equal((await mine.textContent()).trim(), description);
  await shot(page, "resident-reports-390x844.png");

  // Open it, keep it open; staff accept it over the API; the page follows without reload.
  await Promise.all([page.waitForURL(new RegExp(`/me/reports/${id}$`)), mine.click()]);
  await openLive(page, page.url());
  await committee.act(id, { action: "accept", public_note: "已收到，今天安排保洁清运" });
  await page.locator("#report-status", { hasText: "已受理" }).waitFor({ timeout: LIVE_MS });
  await page.locator("#report-timeline li", { hasText: "今天安排保洁清运" }).waitFor({ timeout: LIVE_MS });
  assert.equal((await page.locator("#live-status").textContent()).trim(), "报事有新进展，页面已更新。");
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "updated in place, not reloaded");
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the resident report page");
  await shot(page, "resident-report-detail-390x844.png");
  await committee.api.dispose();
  await page.context().close();
});

test("a resident files from the form with a photo and a typed position; the plan and 'use my location' fill the fields", async () => {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 }, locale: "zh-CN",
    geolocation: { latitude: 30.5802, longitude: 114.2734, accuracy: 20 }, permissions: ["geolocation"],
  });
  const page = await context.newPage();
  await login(page, "resident");
  await page.goto(base + "/me/reports/new");
  assert.equal(await page.locator("form#report-new").getAttribute("enctype"), "multipart/form-data");

  // "Use my location" (shown only with JS) fills latitude and longitude from the browser and
  // switches the place to "by the position below".
  await page.locator("#locate").click();
  await page.waitForFunction(() => document.getElementById("lat").value !== "");
  assert.equal(await page.locator("#lat").inputValue(), "30.580200");
  assert.equal(await page.locator("#lon").inputValue(), "114.273400");
  assert.equal(await page.locator("#place_id").inputValue(), "");
  // A tap on the site plan fills the plan coordinates and marks the spot.
  await page.locator("#plan-pick").click({ position: { x: 5, y: 5 } });
  assert.match(await page.locator("#plan_x").inputValue(), /^\d+$/);
  assert.equal(await page.locator("#plan-mark").getAttribute("hidden"), null);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the report form with its position fields");
  await page.locator("#lat").scrollIntoViewIfNeeded();
  await page.evaluate(() => document.getElementById("lat").closest("fieldset").scrollIntoView());
  await shot(page, "resident-report-position-390x844.png");
  await page.fill("#plan_x", "");
  await page.fill("#plan_y", "");

  // The resident types the point instead, adds a photo and files.
  const description = "东门外的消防栓漏水，地面结冰";
  await page.selectOption("#category", "repair_common");
  await page.fill("#description", description);
  await page.fill("#lat", "30.5801");
  await page.fill("#lon", "114.2733");
  const png = join(dataDir, "form-photo.png");
  writeFileSync(png, tinyPng());
  await page.setInputFiles("#photos", png);
  await Promise.all([page.waitForURL(/\/me\/reports\/[0-9a-f-]{36}$/), page.click("#submit-report")]);
  const id = page.url().split("/").pop();
  assert.equal((await page.locator("h1").textContent()).trim(), description);
  assert.equal((await page.locator("#report-status").textContent()).trim(), "待受理");
  // Its photo is on the page, served back as the 8 px image it was.
  await page.locator(".report-photos img").first().waitFor();
  assert.equal(await page.locator(".report-photos img").count(), 1);
  const photoOk = await page.locator(".report-photos img").first().evaluate((img) => img.complete && img.naturalWidth === 8);
  assert.ok(photoOk, "the photo filed with the form is shown");
  // The report sits at the typed point, in the resident's community.
  const v = await (await page.request.get(`${base}/api/v1/reports/${id}`)).json();
  assert.equal(v.report.lat, 30.5801);
  assert.equal(v.report.lon, 114.2733);
  assert.equal(v.photos.length, 1);
  assert.equal(v.photos[0].stage, "intake");
  await context.close();
});

test("staff work a report from the queue through the page's forms; forged posts are refused", async () => {
  const resident = await apiSession("resident");
  const description = "小区东门路灯不亮，晚上很黑";
  const created = await resident.post("/api/v1/reports", { category: "public_facility", description, place_id: await homePlace(resident) });
  const id = created.report.id;
  await resident.api.dispose();

  const page = await newPage();
  await login(page, "committee");
  await page.goto(base + "/staff/reports");
  const row = page.locator("#report-queue tbody tr", { hasText: description });
  assert.equal(await row.count(), 1, "the new report is in the committee's queue");
  assert.match(await row.textContent(), /公共设施.*待受理/s);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the staff queue");
  await shot(page, "staff-report-queue-1366x768.png");
  await Promise.all([page.waitForURL(new RegExp(`/staff/reports/${id}$`)), row.locator("a").click()]);
  assert.equal((await page.locator("#report-status").textContent()).trim(), "待受理");

  // Accept, then dispatch to the committee's own unit, through the action forms.
  await page.fill("#accept-public-note", "已受理，安排物业电工查看");
  await Promise.all([page.waitForURL(/\?done=1$/), page.click("#act-accept")]);
  assert.equal((await page.locator("#report-status").textContent()).trim(), "已受理");
  const unit = await page.locator("#dispatch-unit option", { hasText: "江城物业服务有限公司" }).getAttribute("value");
  await page.selectOption("#dispatch-unit", unit);
  await page.fill("#dispatch-internal-note", "东门第三根灯杆");
  await Promise.all([page.waitForURL(/\?done=1$/), page.click("#act-dispatch")]);
  assert.equal((await page.locator("#report-status").textContent()).trim(), "已派单");
  const dispatched = page.locator("#report-timeline li", { hasText: "派单" });
  assert.equal(await dispatched.count(), 1, "the dispatch is in the timeline");
  assert.match(await dispatched.textContent(), /东门第三根灯杆/, "staff see the internal note");
  assert.match(await page.locator("#report-timeline").textContent(), /受理.*已受理，安排物业电工查看/s);
  assert.match(await page.locator("dd", { hasText: "江城物业" }).first().textContent(), /江城物业服务有限公司/);
  assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the staff report page");
  await shot(page, "staff-report-detail-1366x768.png");

  // Forged posts with the staff session's cookie are refused and change nothing: one without the
  // form's CSRF token, and one from another site even with the right token (Origin check).
  const version = await page.locator("input[name=version]").first().inputValue();
  const token = await page.locator("input[name=_csrf]").first().inputValue();
  const noToken = await page.request.post(`${base}/staff/reports/${id}/act`, { form: { action: "return", reason: "forged", version } });
  assert.equal(noToken.status(), 403);
  const crossSite = await page.request.post(`${base}/staff/reports/${id}/act`, {
    form: { _csrf: token, action: "return", reason: "forged", version },
    headers: { origin: "http://evil.example", "sec-fetch-site": "cross-site" },
  });
  assert.equal(crossSite.status(), 403);
  const after = await (await page.request.get(`${base}/api/v1/reports/${id}`)).json();
  assert.equal(after.report.status, "dispatched");
  assert.ok(!after.events.some((e) => e.action === "return"), "no return event was recorded");
  await page.context().close();
});

// The resident's home (a room): the first place the report form offers.
async function homePlace(session) {
  const html = await (await session.api.get("/me/reports/new")).text();
  const m = html.match(/<select id="place_id" name="place_id"[^>]*><option value="([0-9a-f-]{36})"/);
  assert.ok(m, "the report form offers the home");
  return m[1];
}

test("repairs: a grab job is taken from the pool, quoted, and the resident accepts the price", async (t) => {
  const resident = await newPage({ width: 390, height: 844 });
  await login(resident, "resident");
  const description = "卫生间水龙头一直滴水，关不紧";
  await resident.goto(base + "/me/reports/new");
  await resident.selectOption("#category", "repair_plumbing");
  await resident.fill("#description", description);
  await Promise.all([resident.waitForURL(/\/me\/reports\/[0-9a-f-]{36}$/), resident.click("#submit-report")]);
  const id = resident.url().split("/").pop();

  // The committee accepts and dispatches by the catalogue: the property company, grab, paid.
  const committee = await apiSession("committee");
  await committee.act(id, { action: "accept" });
  const d = await committee.act(id, { action: "dispatch" });
  assert.equal(d.dispatch_mode, "grab");
  assert.equal(d.paid, true);
  await committee.api.dispose();

  const repair1 = await newPage();
  await login(repair1, "repair1");
  const repair2 = await newPage();
  await login(repair2, "repair2");
  const inPool = async (page) => {
    await page.goto(base + "/staff/reports?tab=grab");
    assert.equal(await page.locator("#tab-grab").getAttribute("aria-current"), "page");
    return page.locator(`#report-queue a[href="/staff/reports/${id}"]`).count();
  };
  assert.equal(await inPool(repair2), 1, "repair2 sees the job in the pool before it is taken");
  // repair2 opens the job too, and is a moment slower below.
  await Promise.all([repair2.waitForURL(new RegExp(`/staff/reports/${id}$`)),
    repair2.locator(`#report-queue a[href="/staff/reports/${id}"]`).click()]);
  assert.equal(await repair2.locator("#act-grab").count(), 1);
  assert.equal(await inPool(repair1), 1, "repair1 sees the job in the 待抢单 tab");
  await shot(repair1, "staff-grab-pool-1366x768.png");
  await Promise.all([repair1.waitForURL(new RegExp(`/staff/reports/${id}$`)),
    repair1.locator(`#report-queue a[href="/staff/reports/${id}"]`).click()]);
  assert.match(await repair1.locator("#report-mode").textContent(), /抢单.*有偿服务/s);
  await Promise.all([repair1.waitForURL(/\?done=1$/), repair1.click("#act-grab")]);
  assert.equal((await repair1.locator("#report-assignee").textContent()).trim(), "维修师傅（一）");
  assert.equal(await repair1.locator("#act-grab").count(), 0, "no grab button once taken");
  // The slower technician's grab from the open page is refused (409, a message on the page);
  // nothing changes.
  const late = await Promise.all([repair2.waitForResponse((r) => r.request().method() === "POST"), repair2.click("#act-grab")]);
  assert.equal(late[0].status(), 409);
  const lateMessage = (await repair2.locator("#report-flash").textContent()).trim();
  assert.ok(lateMessage.length > 0, "the refusal is said on the page");
  assert.equal((await repair2.locator("#report-assignee").textContent()).trim(), "维修师傅（一）");
  // The page posts the version it showed; a grab that lost the race says so plainly.
  assert.equal(lateMessage, "手慢了，这条工单已被别人抢走。");
  assert.equal(await inPool(repair2), 0, "gone from repair2's pool");
  await repair2.context().close();

  // repair1 signs and quotes through the page; the resident's open page shows the price live.
  await openLive(resident, `${base}/me/reports/${id}`);
  await Promise.all([repair1.waitForURL(/\?done=1$/), repair1.click("#act-sign")]);
  assert.equal((await repair1.locator("#report-status").textContent()).trim(), "办理中");
  await repair1.fill("#quote-amount", "120.50");
  await repair1.fill("#quote-public-note", "更换水龙头阀芯，含材料");
  await Promise.all([repair1.waitForURL(/\?done=1$/), repair1.click("#act-quote")]);
  assert.match(await repair1.locator("#report-quote").textContent(), /¥120\.50.*待居民确认/s);

  const answer = resident.locator("#quote-answer");
  await answer.waitFor({ timeout: LIVE_MS });
  assert.equal(await resident.evaluate(() => window.__sameDocument), true, "the quote arrived without reload");
  assert.match(await answer.textContent(), /¥120\.50.*更换水龙头阀芯，含材料/s);
  assert.deepEqual(await lowContrast(resident), [], "WCAG AA contrast with the quote shown");
  await shot(resident, "resident-repair-quote-390x844.png");
  await Promise.all([resident.waitForURL(/\?done=1$/), resident.click("#quote-accept")]);
  assert.match(await resident.locator("#report-quote").textContent(), /¥120\.50.*居民已接受/s);
  assert.equal(await resident.locator("#quote-answer").count(), 0, "no second answer offered");

  // The technician's page now offers the reply (the quote is settled).
  await repair1.goto(`${base}/staff/reports/${id}`);
  assert.match(await repair1.locator("#report-quote").textContent(), /居民已接受/);
  assert.equal(await repair1.locator("#act-quote").count(), 0);
  await repair1.context().close();
  await resident.context().close();
});

test("webhook console: register a loopback webhook, the secret is shown once, a ping arrives signed", async () => {
  // A receiver on loopback that records what it is sent.
  const received = [];
  const receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => { received.push({ headers: req.headers, body: Buffer.concat(chunks) }); res.end("ok"); });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${receiver.address().port}/linli-hook`;
  try {
    const page = await newPage();
    await login(page, "admin");
    await page.goto(base + "/admin/webhooks");
    assert.equal((await page.locator("h1").textContent()).trim(), "Webhook 推送");
    const name = "网格平台对接";
    await page.fill("#wh-name", name);
    await page.fill("#wh-url", url);
    const place = await page.locator("#wh-place option", { hasText: "幸福里社区" }).first().getAttribute("value");
    await page.selectOption("#wh-place", place);
    await page.fill("#wh-kinds", "report.*");
    await Promise.all([page.waitForLoadState("load"), page.click("#webhook-create")]);
    assert.match(await page.locator("#webhook-created").textContent(), new RegExp(`已登记 Webhook“${name}”`));
    const secret = (await page.locator("#webhook-secret").textContent()).trim();
    assert.ok(secret.length >= 32, `a long secret is shown: ${secret.length} chars`);
    const row = page.locator("tr[data-webhook]", { hasText: name });
    assert.equal(await row.count(), 1, "the list shows the new webhook");
    assert.match(await row.textContent(), /127\.0\.0\.1.*report\.\*.*启用中/s);
    assert.deepEqual(await lowContrast(page), [], "WCAG AA contrast on the webhook console");
    await shot(page, "admin-webhooks-1366x768.png");

    // Never again: the list page no longer carries the secret.
    await page.goto(base + "/admin/webhooks");
    assert.equal(await page.locator("#webhook-secret").count(), 0);
    assert.ok(!(await page.content()).includes(secret), "the secret is not on the page any more");
    // Ping it from its page; the receiver gets a delivery signed with that secret.
    await Promise.all([page.waitForURL(/\/admin\/webhooks\/[0-9a-f-]{36}$/),
      page.locator("tr[data-webhook]", { hasText: name }).locator("a").click()]);
    assert.ok(!(await page.content()).includes(secret), "nor on the webhook's page");
    await Promise.all([page.waitForLoadState("load"), page.click("#webhook-ping")]);
    const end = Date.now() + 20_000;
    let ping;
    while (!(ping = received.find((r) => r.headers["x-linli-event"] === "ping")) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(ping, "the ping reached the loopback receiver");
    const mac = createHmac("sha256", secret).update(ping.headers["x-linli-timestamp"] + ".").update(ping.body).digest("hex");
    assert.equal(ping.headers["x-linli-signature"], "sha256=" + mac, "signed with the secret shown once");
    // The delivery log says so.
    let delivered = 0;
    for (let i = 0; i < 20 && !delivered; i++) {
      await page.reload();
      delivered = await page.locator('tr[data-delivery][data-status="delivered"]').count();
      if (!delivered) await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(delivered, 1, "the delivery log shows the ping delivered");
    await page.context().close();
  } finally {
    receiver.close();
  }
});

test("administrator enters a calendar year as the notice reads and versions a routing rule", async () => {
  const page = await newPage();
  await login(page, "district");
  // The calendar: a typo is named beside the form and nothing is saved; the corrected year is.
  await page.goto(base + "/admin/calendar");
  assert.equal(await page.locator("h1").textContent(), "工作日历");
  await page.fill("#c-year", "2031");
  await page.fill("#c-source", "浏览器测试：2031年安排");
  await page.fill("#c-holidays", "01-01\n02-30");
  await Promise.all([page.waitForLoadState("load"), page.click("#calendar-save")]);
  assert.match(await page.locator("#calendar-error").textContent(), /02-30/);
  assert.equal(await page.locator('tr[data-year="2031"]').count(), 0);
  // The form came back as typed.
  assert.equal(await page.inputValue("#c-source"), "浏览器测试：2031年安排");
  await page.fill("#c-holidays", "01-01\n01-22~01-28");
  await page.fill("#c-workdays", "01-18");
  await Promise.all([page.waitForLoadState("load"), page.click("#calendar-save")]);
  assert.equal(await page.locator('tr[data-year="2031"]').count(), 1);
  assert.match(await page.locator('tr[data-year="2031"]').textContent(), /放假 8 天/);
  assert.deepEqual(await lowContrast(page), []);
  await shot(page, "admin-calendar-1366x768.png");

  // The routing catalogue: edit the elevator rule; the history shows both versions.
  await page.goto(base + "/admin/routing");
  const row = page.locator("tr", { hasText: "电梯" }).first();
  await Promise.all([page.waitForLoadState("load"), row.locator("a").click()]);
  await page.fill("#r-resolve", "12");
  await Promise.all([page.waitForLoadState("load"), page.click("#routing-save")]);
  assert.match(page.url(), /\/admin\/routing\?saved=1$/);
  const again = page.locator("tr", { hasText: "电梯" }).first();
  assert.match(await again.textContent(), /v2/);
  await Promise.all([page.waitForLoadState("load"), again.locator("a").click()]);
  const history = await page.locator("#routing-history").textContent();
  assert.match(history, /v1/);
  assert.match(history, /v2/);
  assert.deepEqual(await lowContrast(page), []);
  await shot(page, "admin-routing-1366x768.png");
  await page.context().close();
});

test("staff land on the workbench, compose a role and answer an SOS from its notice", async () => {
  const page = await newPage();
  await login(page, "committee");
  assert.match(page.url(), /\/staff$/);
  assert.equal((await page.locator("h1").textContent()).trim(), "工作台");
  assert.ok((await page.locator("#workbench-figures .figure").count()) >= 3, "the modules' figures");
  assert.deepEqual(await axe(page), [], "axe: workbench");
  await shot(page, "staff-workbench-1366x768.png");

  // Roles: compose a front desk from rights the committee holds; a right it lacks is greyed.
  await page.goto(base + "/admin/roles");
  assert.equal(await page.locator("input[name=actions][value=routing_admin]").isDisabled(), true);
  await page.fill("#role-name", "物业前台");
  await page.check("input[name=actions][value=household_read]");
  await page.check("input[name=actions][value=place_read]");
  assert.deepEqual(await axe(page), [], "axe: roles");
  await shot(page, "admin-roles-1366x768.png");
  await Promise.all([page.waitForURL(/\/admin\/roles\/[0-9a-f-]{36}\?saved=1$/), page.click("#role-create")]);
  assert.equal(await page.locator("#role-name").inputValue(), "物业前台");

  // A resident presses SOS; the alarm's page shows the household to the committee.
  const resident = await request.newContext({ baseURL: base });
  const r = await resident.post("/api/v1/auth/login", { data: { login: "resident", password: "linli-demo" } });
  const csrf = (await r.json()).csrf_token;
  const sos = await resident.post("/api/v1/me/sos", { data: {}, headers: { "x-csrf-token": csrf } });
  assert.equal(sos.status(), 201);
  // The link every notice of this alarm carries (tests/it/links.rs follows them all).
  await page.goto(`${base}/staff/alarms/${(await sos.json()).alarm_id}`);
  assert.ok(await page.locator("#alarm-household").isVisible(), "the household of the SOS");
  assert.deepEqual(await axe(page), [], "axe: alarm page");
  await shot(page, "staff-alarm-1366x768.png");
  await Promise.all([page.waitForLoadState("load"), page.click("#alarm-ack")]);
  assert.equal(await page.locator("#alarm-ack").count(), 0, "acknowledged");
  await resident.dispose();
  await page.context().close();
});

test("a resident shares a celebration on the phone and neighbours' pages stay fast after browsing (back-forward cache)", async () => {
  const page = await newPage({ width: 390, height: 844 });
  await login(page, "resident");
  assert.match(page.url(), /\/me$/);
  await Promise.all([page.waitForURL(/\/me\/celebrations$/), page.click("#home-tiles a[href='/me/celebrations']")]);
  await page.selectOption("#c-kind", "longevity");
  await page.fill("#c-title", "奶奶九十大寿");
  await Promise.all([page.waitForURL(/\/me\/celebrations\?done=shared$/), page.click("#celebration-share button[type=submit]")]);
  assert.ok((await page.locator("#celebrations").textContent()).includes("奶奶九十大寿"));
  assert.deepEqual(await axe(page), [], "axe: celebrations");
  await shot(page, "resident-celebrations-390x844.png");

  // Browse back and forth through pages that listen for live events: each closes its event
  // stream when it goes into the back-forward cache, so the next request is answered at once.
  for (const path of ["/me", "/me/reports", "/inbox", "/me/passes", "/me/celebrations", "/me/reports", "/me"]) {
    await page.goto(base + path);
  }
  for (let i = 0; i < 4; i++) { await page.goBack(); }
  for (let i = 0; i < 2; i++) { await page.goForward(); }
  await page.goto(base + "/me");
  // The SOS waits three seconds for a cancel; a tap by mistake is taken back and nothing is sent.
  await page.locator("#sos-form button[type=submit]").click();
  assert.match(await page.locator("#sos-form .countdown-text").textContent(), /秒后发出求助/);
  await shot(page, "resident-sos-countdown-390x844.png");
  await page.click("#sos-cancel");
  await page.waitForTimeout(3500);
  assert.match(page.url(), /\/me$/, "a cancelled SOS is not sent");
  assert.match(await page.locator(".countdown-cancelled").textContent(), /已取消/);
  // A real one: "call now" sends at once, and the status page says who was told.
  const started = Date.now();
  await page.locator("#sos-form button[type=submit]").click();
  await Promise.all([page.waitForURL(/\/me\/sos$/), page.click("#sos-now")]);
  const took = Date.now() - started;
  assert.ok(took < 5000, `SOS answered in ${took} ms after browsing`);
  // (An earlier test's SOS of this resident may already be confirmed: it is the same call.)
  assert.match(await page.locator("#sos-state").textContent(), /正在等待确认|已确认，正在赶来/);
  assert.match(await page.locator(".sos-told").textContent(), /网格员：/);
  assert.deepEqual(await axe(page), [], "axe: SOS status");
  await shot(page, "resident-sos-status-390x844.png");
  // The grid worker confirms; the resident's open page shows it by itself.
  if (await page.locator("#sos-status[data-poll]").count()) {
    const grid = await request.newContext({ baseURL: base });
    const g = await grid.post("/api/v1/auth/login", { data: { login: "grid", password: "linli-demo" } });
    const gcsrf = (await g.json()).csrf_token;
    const alarms = await (await grid.get("/api/v1/alarms?active=true")).json();
    for (const a of alarms.filter((x) => x.alarm_type === "sos" && !x.acked)) {
      await grid.post(`/api/v1/alarms/${a.id}/ack`, { data: {}, headers: { "x-csrf-token": gcsrf } });
    }
    await grid.dispose();
    await page.waitForFunction(() => /已确认，正在赶来/.test(document.getElementById("sos-state").textContent), null, { timeout: 15000 });
  }
  await page.context().close();
});

test("a community worker registers a family member as the first emergency contact, from the household's record", async () => {
  const resident = await request.newContext({ baseURL: base });
  await resident.post("/api/v1/auth/login", { data: { login: "resident", password: "linli-demo" } });
  const household = (await (await resident.get("/api/v1/me/household")).json()).id;
  await resident.dispose();
  const page = await newPage();
  await login(page, "committee");
  await page.goto(`${base}/registry/households/${household}`);
  const link = page.locator("a[href$='/care']").first();
  await Promise.all([page.waitForURL(/\/staff\/persons\/[0-9a-f-]{36}\/care$/), link.click()]);
  await page.fill("#care-who", "nobody-has-this-login");
  await Promise.all([page.waitForLoadState("load"), page.click("#care-add-submit")]);
  assert.match(await page.locator("#care-who-error").textContent(), /没有找到/);
  assert.equal(await page.locator("#care-who").getAttribute("aria-invalid"), "true");
  await page.fill("#care-who", "volunteer");
  await page.fill("#care-relation", "女儿");
  await Promise.all([page.waitForURL(/\/care\?saved=1$/), page.click("#care-add-submit")]);
  assert.match(await page.locator("#care-list").textContent(), /（女儿）/);
  assert.deepEqual(await axe(page), [], "axe: care contacts");
  await shot(page, "staff-care-contacts-1366x768.png");
  await page.context().close();
});

test("an elderly resident in big-text mode on a 320 px phone: nothing overflows, every control is at least 44 px tall", async () => {
  const page = await newPage({ width: 320, height: 640 });
  await login(page, "resident");
  await Promise.all([page.waitForLoadState("load"), page.click("#toggle-big")]);
  const problems = [];
  for (const path of ["/me", "/me/reports", "/me/reports/new", "/me/passes", "/me/celebrations", "/me/sos", "/inbox"]) {
    await page.goto(base + path);
    const found = await page.evaluate(() => {
      const out = [];
      if (document.documentElement.scrollWidth > window.innerWidth + 1) {
        out.push(`page is ${document.documentElement.scrollWidth}px wide`);
      }
      // Controls a finger must hit: buttons, fields, and links styled as buttons or tiles
      // (links inside running text are exempt, as WCAG 2.5.8 allows).
      for (const el of document.querySelectorAll("button, input:not([type=hidden]), select, textarea, a.button, a.tile")) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (el.type === "checkbox" || el.type === "radio") continue;
        if (r.height < 44) out.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""} "${(el.textContent || el.value || "").trim().slice(0, 20)}" ${Math.round(r.height)}px`);
      }
      return out;
    });
    for (const f of found) problems.push(`${path}: ${f}`);
  }
  await page.goto(base + "/me");
  await shot(page, "resident-home-big-text-320x640.png");
  assert.deepEqual(problems, []);
  await page.context().close();
});

test("a resident saves a visitor pass's QR code as an image to send on", async () => {
  const page = await newPage({ width: 390, height: 844 });
  await login(page, "resident");
  const csrf = await page.evaluate(() => document.querySelector("input[name=_csrf]").value);
  const created = await page.request.post(base + "/api/v1/access/passes", {
    data: { visitor_name: "李阿姨", phone: "13912340000", valid_until: Date.now() + 86400000 },
    headers: { "x-csrf-token": csrf },
  });
  assert.equal(created.status(), 201);
  const pass = await created.json();
  await page.goto(`${base}/me/passes/${pass.id}`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#save-pass")]);
  assert.match(download.suggestedFilename(), /^通行证-李阿姨\.png$/);
  const bytes = await (await page.request.get(`${base}/api/v1/access/passes/${pass.id}/qr.png`)).body();
  assert.equal(bytes.subarray(1, 4).toString(), "PNG");
  assert.deepEqual(await axe(page), [], "axe: visitor pass");
  await shot(page, "resident-pass-390x844.png");
  await page.context().close();
});

test("full numbers leave only by a confirmed POST with a purpose", async () => {
  const page = await newPage();
  await login(page, "committee");
  await page.goto(base + "/registry/export");
  await page.locator("#export-revealed").scrollIntoViewIfNeeded();
  await shot(page, "staff-export-1366x768.png");
  await Promise.all([page.waitForLoadState("load"), page.click("#export-revealed-submit")]);
  assert.equal(await page.locator("#export-kind").getAttribute("aria-invalid"), "true");
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), "export-kind", "lands on the first field to correct");
  await page.selectOption("#export-kind", "subsidy");
  await page.fill("#export-purpose", "低保年审");
  await page.check("#export-confirm");
  assert.deepEqual(await axe(page), [], "axe: export");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-revealed-submit")]);
  assert.match(download.suggestedFilename(), /persons\.xlsx$/);
  assert.ok(!page.url().includes("purpose"), "the purpose is not in any URL");
  await page.context().close();
});
