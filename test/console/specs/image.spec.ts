import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("an image: layers with what made them, config, raw JSON", async ({ page }) => {
  await login(page);
  const current = seed.Pushes[seed.Pushes.length - 1];
  await page.goto(`/console/projects/${seed.Project}/streams/app/images/${current}`);
  await expect(page.getByTestId("digest")).toHaveText(current);
  await expect(page.getByTestId("layers")).toContainText("COPY");
  const config = page.getByTestId("config");
  await expect(config).toContainText("/app");
  await expect(config).toContainText("--serve");
  await expect(config).toContainText("1001");
  await expect(config).toContainText("APP_BUILD=2");
  await expect(config).toContainText("8080/tcp");
  await expect(config).toContainText("org.opencontainers.image.title=app");
  await page.getByText("Manifest (raw JSON)").click();
  await expect(page.getByTestId("raw-manifest")).toContainText('"schemaVersion": 2');
  await page.getByText("Config (raw JSON)").click();
  await expect(page.getByTestId("raw-config")).toContainText('"history"');
  await checkA11y(page);
  await screenshot(page, "image");
});

test("an index: its children, and the SBOM that refers to it", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/${seed.Project}/streams/multi/images/${seed.Index}`);
  for (const child of seed.Platforms) {
    await expect(page.getByRole("link", { name: child })).toBeVisible();
  }
  const referrers = page.getByTestId("referrers");
  await expect(referrers).toContainText("application/spdx+json");
  await expect(referrers).toContainText(seed.Referrer.slice(7, 19));
  await checkA11y(page);
});
