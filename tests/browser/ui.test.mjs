// Browser tests for the Linli web UI in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core). They start `linli serve --demo` on a free loopback port with a
// fresh data directory, and sign in as the demo accounts.
//
//   LINLI_BIN=/path/to/linli node --test ui.test.mjs
//   LINLI_SCREENSHOTS=../../docs/screenshots  also writes the screenshots shown in the docs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

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

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name), fullPage: false });
}

test("staff finds a person and opens the household (一户一表)", async () => {
  const page = await newPage();
  await login(page, "committee");
  assert.match(page.url(), /\/registry$/);
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
