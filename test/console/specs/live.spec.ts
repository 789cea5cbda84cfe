import { test, expect } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { seed, login } from "./helpers";

test("a push appears on the stream page without a reload", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/sandbox/streams/live`);
  await expect(page.locator("[data-live]")).toHaveAttribute("data-following", "true");
  const marker = await page.evaluate(() => { (window as any).berthMarker = 42; return (window as any).berthMarker; });
  const dir = mkdtempSync(join(tmpdir(), "berth-live-"));
  writeFileSync(join(dir, "live.txt"), "pushed while watched\n");
  execFileSync("tar", ["-C", dir, "-czf", join(dir, "live.tgz"), "live.txt"]);
  execFileSync(seed.Crane, ["append", "-f", join(dir, "live.tgz"), "-t", `${seed.Host}/sandbox/live:pushed`],
    { env: { ...process.env, DOCKER_CONFIG: seed.DockerConfig, SSL_CERT_FILE: seed.CAFile } });
  await expect(page.locator('tr[data-tag="pushed"]')).toBeVisible({ timeout: 15_000 });
  // The same page, not a reload.
  expect(await page.evaluate(() => (window as any).berthMarker)).toBe(marker);
});

test("a push to a tag appears in its open history", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/sandbox/streams/live/tags/first`);
  await expect(page.locator("[data-live]")).toHaveAttribute("data-following", "true");
  await expect(page.getByTestId("entry-digest")).toHaveCount(1);
  const dir = mkdtempSync(join(tmpdir(), "berth-live-"));
  writeFileSync(join(dir, "again.txt"), "a second image for the tag\n");
  execFileSync("tar", ["-C", dir, "-czf", join(dir, "again.tgz"), "again.txt"]);
  execFileSync(seed.Crane, ["append", "-f", join(dir, "again.tgz"), "-t", `${seed.Host}/sandbox/live:first`],
    { env: { ...process.env, DOCKER_CONFIG: seed.DockerConfig, SSL_CERT_FILE: seed.CAFile } });
  await expect(page.getByTestId("entry-digest")).toHaveCount(2, { timeout: 15_000 });
  await expect(page.locator('tr[data-entry="1"]')).toBeVisible();
});
